"""A predictor payload for a pipeline fitted in a test or a benchmark, in the layout deploy writes.

Deploy writes the champion's payload from the registry (``mlops.core.serving.payload``); a drill or a test that
needs a second model, or another family, fits one in seconds and writes it here: the model directory as
MLflow saves it, then ``model.json``, written last and atomically, as the predictor expects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow.sklearn
import pandas as pd

from mlops.core import config
from mlops.core.data import schema
from mlops.core.serving.model_card import MODEL_JSON, ModelCard
from mlops.core.training import registry


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
    card = ModelCard(
        name=settings.training.model_name,
        version=version,
        alias="champion",
        threshold=threshold,
        family=family,
        model_dir=f"model-{version}",
        feature_schema=schema.from_training(frame, settings.dataset).to_dict(),
    )
    partial = folder / f"{MODEL_JSON}.tmp"
    partial.write_text(card.to_json())
    os.replace(partial, folder / MODEL_JSON)
    return folder
