"""A running platform for the app's pages: a model of its own in MLflow, a real predictor, a monitoring DB.

The model name is the tests' own (deploy scenarios move aliases of theirs; `bank-marketing` belongs to the
Mage tests). Version 1 is the trained XGBoost candidate (so /explain has contributions), promoted by the real
deploy logic, written as a payload and served by the real predictor under gunicorn; version 2 is the
trained challenger, registered as `challenger`. The monitor logic runs on both monitoring batches, and a
few hundred records go through the predictor so the monitoring page has a prediction log to show.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from mlflow.tracking import MlflowClient
from streamlit.testing.v1 import AppTest

from mlops.core import config, services
from mlops.core.lifecycle import campaign, promotion, retrain
from mlops.core.monitoring import drift_metrics, store
from mlops.core.serving import payload, predictor_server
from mlops.core.serving.predictor_client import PredictorClient
from mlops.core.training import registry

APP = Path(__file__).resolve().parents[2] / "mlops" / "app"
PAGES = {
    "home": APP / "Home.py",
    "test_form": APP / "pages" / "1_Test_form.py",
    "batch": APP / "pages" / "2_Batch_scoring.py",
    "models": APP / "pages" / "3_Models.py",
    "monitoring": APP / "pages" / "4_Monitoring.py",
    "campaign": APP / "pages" / "5_Campaign_planner.py",
}
LOGGED_RECORDS = 300
# What Grafana's webhook sends when the prediction-drift alert fires (the fields the receiver reads).
FIRING = {
    "status": "firing",
    "groupKey": '{}/{}:{alertname="prediction_drift"}',
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "prediction_drift"},
            "fingerprint": "0a1b2c3d4e5f6071",
            "startsAt": "2026-11-20T10:15:00Z",
        }
    ],
}


@dataclass(frozen=True)
class AppPlatform:
    settings: config.Settings
    env: dict[str, str]  # the MLOPS_* overrides the app runs with
    served_version: str
    challenger_version: str
    client: PredictorClient


def page(name: str, timeout: float = 180) -> AppTest:
    return AppTest.from_file(str(PAGES[name]), default_timeout=timeout)


def _xgboost_candidate(client: MlflowClient, settings: config.Settings) -> tuple[str, dict[str, str]]:
    """Model URI and registry tags of the XGBoost candidate the train pipeline logged."""
    trained = registry.version_by_alias(client, settings.training.model_name, registry.CHALLENGER)
    assert trained is not None, "the train pipeline registered no challenger"
    experiment = client.get_experiment_by_name(settings.stores.experiment)
    (run,) = client.search_runs(
        [experiment.experiment_id],
        f"tags.mlflow.parentRunId = '{trained.tags['training_run_id']}' and tags.family = 'xgboost'",
    )
    (output,) = run.outputs.model_outputs
    metrics = run.data.metrics
    tags = {
        **{k: v for k, v in trained.tags.items() if not k.startswith(("validation_", "test_"))},
        "family": "xgboost",
        "candidate_run_id": run.info.run_id,
        "threshold": str(metrics["validation_threshold"]),
        **{k: str(round(v, 6)) for k, v in metrics.items() if k.startswith(("validation_", "test_"))},
    }
    return f"models:/{output.model_id}", tags


def _wait_for_logged(url: str, rows: int, timeout: float = 30) -> None:
    eng = store.engine(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with eng.connect() as conn:
                if conn.execute(sa.select(sa.func.count()).select_from(store.predictions)).scalar_one() >= rows:
                    return
            time.sleep(0.5)
    finally:
        eng.dispose()
    raise AssertionError(f"the predictor logged fewer than {rows} predictions within {timeout} s")


@pytest.fixture(scope="session")
def app_platform(
    trained: object, settings: config.Settings, make_database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppPlatform]:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("app")
    port = services.free_port()
    env = {
        "MLOPS_TRAINING__MODEL_NAME": f"app-test-{uuid.uuid4().hex[:8]}",
        "MLOPS_STORES__MONITORING_DB": make_database("app_monitoring"),
        "MLOPS_SERVING__PORT": str(port),
        "MLOPS_SERVING__URL": f"http://127.0.0.1:{port}",
        "MLOPS_SERVING__PAYLOAD_DIR": str(folder / "predictor"),
        "MLOPS_SERVING__SPOOL_DIR": str(folder / "spool"),
        "MLOPS_DEPLOY__START_PREDICTOR": "false",
        "MLOPS_MONITORING__REPORTS_DIR": str(folder / "reports"),
    }
    proc: services.ManagedProcess | None = None
    with _environment(env):  # only while setting up: other test folders must not see these overrides
        app_settings = config.load()
        client = registry.configure(app_settings)
        uri, tags = _xgboost_candidate(client, settings)
        served = registry.register(client, uri, app_settings.training.model_name, tags, alias=registry.CHALLENGER)
        decision = promotion.promote_if_better(app_settings)
        assert decision.action == "promoted", decision
        payload.write_payload(app_settings, served.version)
        proc = predictor_server.predictor_process(app_settings, log_path=folder / "predictor.log").start()
    try:
        services.wait_http(f"{env['MLOPS_SERVING__URL']}/ready", proc, timeout=120)
        trained_version = registry.version_by_alias(client, settings.training.model_name, registry.CHALLENGER)
        assert trained_version is not None
        name = app_settings.training.model_name
        challenger = registry.register(
            client, trained_version.source, name, dict(trained_version.tags), alias=registry.CHALLENGER
        )
        for batch in app_settings.dataset.split.batches:
            drift_metrics.monitor(app_settings, batch=batch)
        alert = retrain.receive(app_settings, FIRING)
        retrain.record_outcome(app_settings, alert.alert_id, "received by the app tests; no retrain was run")
        predictor = PredictorClient(env["MLOPS_SERVING__URL"], timeout=60)
        labeled = campaign.latest_labeled(app_settings).frame
        records = labeled[app_settings.dataset.features].head(LOGGED_RECORDS)
        predictor.predict(records.astype(object).where(records.notna(), None).to_dict("records"))
        _wait_for_logged(app_settings.monitoring_db, LOGGED_RECORDS)
        yield AppPlatform(app_settings, env, served.version, challenger.version, predictor)
    finally:
        proc.stop()


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def app_env(app_platform: AppPlatform, monkeypatch: pytest.MonkeyPatch) -> AppPlatform:
    """The app platform's environment for one test (the session fixture restores it at the end)."""
    for key, value in app_platform.env.items():
        monkeypatch.setenv(key, value)
    return app_platform
