"""The provisioned alert rule on a monitoring database two models share, evaluated as Grafana evaluates it:
each model is an alert instance of its own, and a platform's retrain acts only on its own model's alert."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlops.core import config
from mlops.core.lifecycle import retrain
from mlops.core.monitoring import alerting, drift_metrics, store


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'monitoring.db'}"
    return str(request.getfixturevalue("make_database")("alert_rule"))


def settings_for(url: str, model: str) -> config.Settings:
    return config.load(environ={**os.environ, "MLOPS_STORES__MONITORING_DB": url, "MLOPS_TRAINING__MODEL_NAME": model})


def record_run(url: str, model: str, version: str, drift: float, threshold: float, minutes_ago: int) -> None:
    """A monitor run written by the monitor pipeline's own writer: the run, and the prediction's drift row."""
    prediction = drift_metrics.ColumnDrift(
        "prediction", "Wasserstein distance (normed)", drift, threshold, drift > threshold
    )
    result = drift_metrics.MonitorResult(
        batch="batch",
        model_name=model,
        model_version=version,
        rows=1000,
        sample_rows=1000,
        drifted_columns=0,
        drifted_share=0.0,
        dataset_drift=False,
        prediction_drift=drift,
        prediction_drift_method=prediction.method,
        missing_share=0.0,
        columns=[prediction],
        report_uri="file:///dev/null",
        prediction_threshold=threshold,
    )
    drift_metrics.write(settings_for(url, model), result, datetime.now(UTC) - timedelta(minutes=minutes_ago))


def test_each_model_is_an_alert_instance_of_its_own(shared_db: str) -> None:
    store.migrate(shared_db)
    record_run(shared_db, "churn", "1", drift=0.5, threshold=0.1, minutes_ago=30)  # an older version drifted
    record_run(shared_db, "churn", "2", drift=0.05, threshold=0.1, minutes_ago=10)
    record_run(shared_db, "fraud", "7", drift=0.4, threshold=0.2, minutes_ago=20)

    churn = alerting.evaluate(settings_for(shared_db, "churn"))
    assert churn.labels == {"model": "churn"}
    assert churn.state == "Normal" and churn.values == {"A": 0.05, "B": 0.1, "C": 0.0}

    fraud = alerting.evaluate(settings_for(shared_db, "fraud"))
    assert fraud.firing and fraud.values == {"A": 0.4, "B": 0.2, "C": 1.0}

    unseen = alerting.evaluate(settings_for(shared_db, "never-monitored"))
    assert unseen.state == "Normal" and unseen.values == {"A": None, "B": None}  # no data is OK


def test_a_platform_retrains_only_on_its_own_models_alert(shared_db: str) -> None:
    store.migrate(shared_db)
    record_run(shared_db, "fraud", "7", drift=0.4, threshold=0.2, minutes_ago=5)
    churn, fraud = settings_for(shared_db, "churn"), settings_for(shared_db, "fraud")
    body = alerting.notification(alerting.evaluate(fraud))
    assert body["alerts"][0]["labels"]["model"] == "fraud"

    ignored = retrain.receive(churn, body)
    assert not ignored.retrain and "about model 'fraud'; this platform retrains 'churn'" in ignored.reason
    assert retrain.receive(fraud, body).retrain
    assert retrain.alerts(churn) == []  # what churn's platform shows: nothing about churn
    assert [(a["model_name"], a["action"]) for a in retrain.alerts(fraud)] == [
        ("fraud", "ignored"),
        ("fraud", "retrain"),
    ]


def test_a_query_that_grafana_could_not_read_as_instances_is_refused(shared_db: str) -> None:
    store.migrate(shared_db)
    record_run(shared_db, "churn", "1", drift=0.3, threshold=0.1, minutes_ago=5)
    eng = sa.create_engine(store.normalise_url(shared_db))
    try:
        with eng.connect() as conn:
            alerting._connect(conn, shared_db)
            two_numbers = "SELECT model_name, prediction_drift, rows FROM monitoring.monitor_runs"
            with pytest.raises(alerting.AlertRuleError, match="one numeric column per row, got 2"):
                alerting._instances(conn, two_numbers, "A")
            same_labels = "SELECT 'x' AS model, prediction_drift FROM monitoring.monitor_runs UNION ALL SELECT 'x', 1.0"
            with pytest.raises(alerting.AlertRuleError, match="two rows labelled"):
                alerting._instances(conn, same_labels, "A")
    finally:
        eng.dispose()
