"""A predictor payload for a pipeline fitted in a test or a benchmark, in the layout deploy writes.

Deploy writes the champion's payload from the registry (``mlops.core.payload``); a drill or a test that
needs a second model, or another family, fits one in seconds and writes it here: the model directory as
MLflow saves it, then ``model.json``, written last and atomically, as the predictor expects.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mlflow.sklearn
import pandas as pd

from mlops.core import config, registry, schema


def write_local_payload(
    folder: Path,
    pipeline: Any,
    version: str,
    frame: pd.DataFrame,
    settings: config.Settings,
    family: str,
    threshold: float = 0.3,
) -> Path:
    """A payload (model dir + model.json written last, atomically) for a pipeline fitted in the test."""
    folder.mkdir(parents=True, exist_ok=True)
    mlflow.sklearn.save_model(
        pipeline,
        str(folder / f"model-{version}"),
        skops_trusted_types=registry.SKOPS_TRUSTED_TYPES,
        pip_requirements=registry.model_requirements(),
    )
    info = {
        "name": settings.training.model_name,
        "version": version,
        "alias": "champion",
        "threshold": threshold,
        "metrics": {},
        "trained_at": None,
        "family": family,
        "run_id": None,
        "model_dir": f"model-{version}",
        "schema": schema.from_training(frame, settings.dataset).to_dict(),
    }
    partial = folder / "model.json.tmp"
    partial.write_text(json.dumps(info))
    os.replace(partial, folder / "model.json")
    return folder
