"""A second, synthetic binary-classification table runs through prepare and train with no code change:
other column names, a 0/1 target, no season column, a random split."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from mlflow.tracking import MlflowClient

from mlops.core.training import registry
from tests.conftest import mage_run, run_cli


def synthetic_churn(rows: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 73, rows)
    calls = rng.poisson(1.5, rows)
    plan = rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2]).astype(object)
    plan[rng.random(rows) < 0.05] = None
    region = rng.choice(["north", "south", "east", "west"], rows)
    logit = -1.0 - 0.04 * tenure + 0.6 * calls + np.where(plan == "basic", 0.8, 0.0)
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_spend": rng.normal(70, 20, rows).round(2),
            "support_calls": calls,
            "plan": plan,
            "region": region,
            "account_id": np.arange(rows),
            "churned": churned,
        }
    )


def test_synthetic_dataset_through_prepare_and_train(tmp_path: Path, mlflow_server: str) -> None:
    csv = tmp_path / "churn.csv"
    synthetic_churn(3000).to_csv(csv, index=False)
    spec = {
        "project": "churn",
        "paths": {"work_dir": str(tmp_path / "work"), "data_dir": str(tmp_path)},
        "stores": {
            "tracking_uri": mlflow_server,
            "experiment": "churn",
            "monitoring_db": f"sqlite:///{tmp_path}/monitoring.db",
        },
        "dataset": {
            "name": "churn",
            "source": {"path": str(csv)},
            "target": "churned",
            "positive_label": 1,
            "labels": [0, 1],
            "numerical": ["tenure_months", "monthly_spend", "support_calls"],
            "categorical": ["plan", "region"],
            "excluded": {"account_id": {"reason": "an identifier, not a property of the customer"}},
            "split": {"strategy": "random", "batches": {"batch_a": 0.2, "batch_b": 0.2}, "seed": 3},
        },
        "training": {
            "model_name": "synthetic-churn",
            "families": ["logistic_regression", "xgboost"],
            "search": {"max_trials": 2, "time_budget_seconds": 10},
        },
    }
    config_file = tmp_path / "churn.yaml"
    config_file.write_text(yaml.safe_dump(spec))
    env = {
        "MLOPS_CONFIG": str(config_file),
        "MLOPS_DATASET__SOURCE__PATH": str(csv),
        "MLOPS_PATHS__WORK_DIR": str(tmp_path / "work"),
        "MLOPS_STORES__TRACKING_URI": mlflow_server,
        "MAGE_DATA_DIR": str(tmp_path / "mage"),
    }
    # prepare through `python -m mlops --config FILE`, with no MLOPS_CONFIG: the pipeline reads the file given
    cli_env = {k: v for k, v in {**os.environ, **env}.items() if k != "MLOPS_CONFIG"}
    result = run_cli("--config", str(config_file), "run", "prepare", env=cli_env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    result = mage_run("train", env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    prepared = tmp_path / "work" / "datasets" / "churn"
    batches = sorted(p.stem for p in (prepared / "batches").glob("*.parquet"))
    assert batches == ["batch_a", "batch_b"]
    assert len(pd.read_parquet(prepared / "batches" / "batch_a.parquet")) == 600
    version = registry.version_by_alias(MlflowClient(mlflow_server, mlflow_server), "synthetic-churn", "challenger")
    assert version is not None and float(version.tags["validation_roc_auc"]) > 0.7
    assert version.tags["features"] == '["tenure_months", "monthly_spend", "support_calls", "plan", "region"]'
