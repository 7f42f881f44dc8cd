"""Fixtures of the deploy tests: a model name of their own, with versions of known quality.

The scenario tests move aliases back and forth, so they use their own registered model (a copy of the
trained challenger plus deliberately useless stand-ins) and leave `bank-marketing` to the Mage test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline

from mlops.core import config
from mlops.core.data import features, preparation, schema
from mlops.core.training import registry


@pytest.fixture(scope="module")
def scenario_settings(trained: object, settings: config.Settings, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The platform's settings with a fresh model name and payload folder; deploy never starts a predictor."""
    folder = tmp_path_factory.mktemp("payload")
    return settings.model_copy(
        update={
            "training": settings.training.model_copy(update={"model_name": f"deploy-test-{uuid.uuid4().hex[:8]}"}),
            "serving": settings.serving.model_copy(
                update={"payload_dir": folder / "predictor", "url": "http://127.0.0.1:9"}
            ),
            "deploy": settings.deploy.model_copy(update={"start_predictor": False}),
        }
    )


@pytest.fixture(scope="module")
def client(scenario_settings: config.Settings) -> MlflowClient:
    return registry.configure(scenario_settings)


@pytest.fixture(scope="module")
def register_trained(
    client: MlflowClient, settings: config.Settings, scenario_settings: config.Settings
) -> Callable[[], str]:
    """Register the trained challenger's model under the scenario's name (same artifact, same tags)."""

    def register() -> str:
        trained = registry.version_by_alias(client, settings.training.model_name, registry.CHALLENGER)
        assert trained is not None
        return registry.register(
            client, trained.source, scenario_settings.training.model_name, dict(trained.tags)
        ).version

    return register


@pytest.fixture(scope="module")
def register_useless(client: MlflowClient, scenario_settings: config.Settings) -> Callable[[], str]:
    """Register a pipeline whose model predicts the base rate for everyone (ROC-AUC 0.5)."""
    cfg = scenario_settings
    train = preparation.load_split(cfg, "train")
    X, y = features.normalise(train, cfg.dataset), preparation.labels(train, cfg)

    def register() -> str:
        pipeline = Pipeline(
            [("preprocess", features.preprocessor(cfg.dataset, "logistic_regression")), ("model", DummyClassifier())]
        ).fit(X, y)
        with mlflow.start_run(run_name="useless-stand-in") as run:
            mlflow.log_dict(schema.from_training(train, cfg.dataset).to_dict(), schema.ARTIFACT)
            info = registry.log_pipeline(pipeline, X.head(20))
        tags = {
            "family": "dummy",
            "threshold": 0.5,
            "candidate_run_id": run.info.run_id,
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "validation_roc_auc": 0.5,
        }
        return registry.register(client, info.model_uri, cfg.training.model_name, tags).version

    return register


def set_challenger(client: MlflowClient, settings: config.Settings, version: str) -> None:
    client.set_registered_model_alias(settings.training.model_name, registry.CHALLENGER, version)


def aliases(client: MlflowClient, settings: config.Settings) -> dict[str, str]:
    model = client.get_registered_model(settings.training.model_name)
    return {alias: str(version) for alias, version in model.aliases.items()}


def payload_folder(settings: config.Settings) -> Path:
    return settings.resolve(settings.serving.payload_dir)
