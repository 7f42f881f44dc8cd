"""The same Mage pipelines on Spark: ``compute.engine: spark`` in the environment is all that changes.

prepare validates, splits and writes the bank table on Spark (local[2]); train fits XGBoost with xgboost.spark and
registers the challenger; monitor measures a batch on Spark. Each runs through ``mage run``, as users and CI run it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlops.core import config
from mlops.core.training import registry
from tests.conftest import mage_run

pytestmark = [pytest.mark.postgres, pytest.mark.mlflow, pytest.mark.mage, pytest.mark.slow, pytest.mark.spark]


def test_prepare_and_train_run_on_spark_through_mage(platform_env: dict[str, str], tmp_path: Path) -> None:
    env = {
        "MLOPS_COMPUTE__ENGINE": "spark",
        "MLOPS_COMPUTE__SPARK_MASTER": "local[2]",
        "MLOPS_PATHS__WORK_DIR": str(tmp_path / "work"),
        "MAGE_DATA_DIR": str(tmp_path / "mage_data"),
        "MLOPS_TRAINING__MODEL_NAME": "bank-marketing-on-spark",
        "MLOPS_TRAINING__FAMILIES": '["xgboost"]',
        "MLOPS_TRAINING__CATEGORICAL_ENCODING": "native",
        "MLOPS_TRAINING__SPARK_PARAMS": json.dumps({"n_estimators": 40, "max_depth": 4, "learning_rate": 0.2}),
    }
    settings = config.load(environ={**os.environ, **env})
    prepared = mage_run("prepare", env)
    assert prepared.returncode == 0, prepared.stdout[-3000:] + prepared.stderr[-3000:]
    for name in ("train", "validation", "test"):
        assert (settings.prepared_dir / f"{name}.parquet").is_dir()  # Parquet folders: Spark wrote them
    report = json.loads((settings.prepared_dir / "data_report.json").read_text())
    assert list(report["parts"]) == ["train", "validation", "test", "batch:summer", "batch:fall"]
    assert sum(part["rows"] for part in report["parts"].values()) == 45_211
    leakage = {r["column"]: r for r in json.loads((settings.prepared_dir / "leakage_report.json").read_text())}
    assert leakage["duration"]["flagged"] and leakage["duration"]["excluded"]  # the post-outcome column, caught

    trained = mage_run("train", env)
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    client = MlflowClient(settings.tracking_uri)
    challenger = registry.version_by_alias(client, settings.training.model_name, registry.CHALLENGER)
    assert challenger is not None and challenger.tags["family"] == "xgboost"
    run = client.get_run(challenger.run_id)
    assert run.data.params["engine"] == "spark" and run.data.params["n_estimators"] == "40"
    assert run.data.metrics["spark_parity_max_abs_diff"] <= 1e-6
    assert run.data.metrics["validation_roc_auc"] > 0.7
