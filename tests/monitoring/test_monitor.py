"""The monitor pipeline's core on real data and a real PostgreSQL: rows, report, alert and panel SQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlops.core import config
from mlops.core.data import preparation
from mlops.core.lifecycle import retrain
from mlops.core.monitoring import alerting, drift_metrics, drift_reference, monitored_inputs, store
from mlops.core.platform import orchestration

from .conftest import load_provisioning, webhook

pytestmark = [pytest.mark.postgres, pytest.mark.mlflow, pytest.mark.slow]


def counts(settings: config.Settings) -> tuple[int, int]:
    eng = store.engine(settings.monitoring_db)
    try:
        with eng.connect() as conn:
            runs = conn.execute(sa.select(sa.func.count()).select_from(store.monitor_runs)).scalar_one()
            columns = conn.execute(sa.select(sa.func.count()).select_from(store.column_drift)).scalar_one()
    finally:
        eng.dispose()
    return int(runs), int(columns)


def log_predictions(settings: config.Settings, frame: pd.DataFrame, version: str, when: datetime) -> None:
    """Rows as the predictor's log writes them (inputs as JSON, probability, decision)."""
    records = frame[settings.dataset.features].astype(object).where(frame[settings.dataset.features].notna(), None)
    request = uuid.uuid4().hex
    rows = [
        {
            "request_id": request,
            "record_index": i,
            "scored_at": when,
            "model_name": settings.training.model_name,
            "model_version": version,
            "inputs": record,
            "probability": 0.1 + 0.8 * (i % 10) / 10,
            "decision": i % 10 > 5,
        }
        for i, record in enumerate(records.to_dict("records"))
    ]
    eng = store.engine(settings.monitoring_db)
    try:
        with eng.begin() as conn:
            conn.execute(store.predictions.insert(), rows)
    finally:
        eng.dispose()


def test_no_monitor_run_means_no_alert(fresh_settings: config.Settings) -> None:
    evaluation = alerting.evaluate(fresh_settings)
    assert evaluation.state == "Normal" and evaluation.values == {"A": None, "B": None}


def test_alert_stays_quiet_for_reference_data_and_fires_for_drift(
    champion: str, fresh_settings: config.Settings
) -> None:
    floor = fresh_settings.monitoring.prediction_drift_threshold
    held_out = drift_metrics.monitor(
        fresh_settings, batch="reference-test", frame=preparation.load_split(fresh_settings, "test")
    )
    assert held_out.model_version == champion
    assert held_out.prediction_threshold >= floor
    assert held_out.prediction_drift < held_out.prediction_threshold and held_out.drifted_share < 0.5
    quiet = alerting.evaluate(fresh_settings)
    assert quiet.state == "Normal" and quiet.values["A"] == pytest.approx(held_out.prediction_drift)
    assert quiet.values["B"] == pytest.approx(held_out.prediction_threshold)  # what the run recorded

    fall = drift_metrics.monitor(fresh_settings, batch="fall")
    assert fall.prediction_drift > fall.prediction_threshold >= floor and fall.dataset_drift
    assert 0 < fall.missing_share < 1 and fall.roc_auc is not None and 0.5 < fall.roc_auc < 1
    assert fall.pr_auc is not None and fall.f1 is not None
    firing = alerting.evaluate(fresh_settings)
    assert firing.firing and firing.values["A"] == pytest.approx(fall.prediction_drift) and firing.values["C"] == 1.0

    runs, columns = counts(fresh_settings)
    per_run = len(fresh_settings.dataset.features) + 1  # every feature plus the prediction
    assert (runs, columns) == (2, 2 * per_run)
    report = Path(urlparse(fall.report_uri).path)
    assert report.is_file() and report.stat().st_size > 10_000 and report.suffix == ".html"
    stored = drift_metrics.runs(fresh_settings, limit=1)[0]
    assert stored["batch"] == "fall" and stored["model_version"] == champion
    assert stored["report_uri"] == fall.report_uri


def test_a_large_batch_is_compared_on_a_seeded_sample_and_counted_whole(
    champion: str, fresh_settings: config.Settings
) -> None:
    sampled = fresh_settings.model_copy(
        update={"monitoring": fresh_settings.monitoring.model_copy(update={"drift_sample_rows": 1_000})}
    )
    batch = preparation.load_batch(sampled, "summer").reset_index(drop=True)
    batch.loc[::7, "job"] = None  # missing cells whose share a sample would only estimate
    first = drift_metrics.monitor(sampled, batch="summer-sampled", frame=batch)
    again = drift_metrics.monitor(sampled, batch="summer-sampled", frame=batch)
    whole = drift_metrics.monitor(fresh_settings, batch="summer-whole", frame=batch)
    features = sampled.dataset.features
    assert first.rows == whole.rows == len(batch) > 1_000
    assert first.sample_rows == 1_000 and whole.sample_rows == len(batch)
    exact = batch[features].isna().to_numpy().sum() / (len(batch) * len(features))
    assert first.missing_share == pytest.approx(exact) and whole.missing_share == pytest.approx(exact)
    assert (first.roc_auc, first.f1) == (whole.roc_auc, whole.f1)  # quality over every labeled row
    assert first.prediction_drift == again.prediction_drift  # the sample is seeded
    assert first.prediction_drift != whole.prediction_drift
    stored = {row["batch"]: row for row in drift_metrics.runs(sampled, limit=3)}
    assert stored["summer-sampled"]["sample_rows"] == 1_000 and stored["summer-sampled"]["rows"] == len(batch)
    assert stored["summer-whole"]["sample_rows"] == len(batch)


def test_a_window_of_the_prediction_log_is_monitored(champion: str, fresh_settings: config.Settings) -> None:
    now = datetime.now(UTC)
    log_predictions(fresh_settings, preparation.load_batch(fresh_settings, "fall").head(800), champion, now)
    result = drift_metrics.monitor_from_variables(
        fresh_settings,
        {
            "window_start": (now - timedelta(minutes=5)).isoformat(),
            "window_end": (now + timedelta(minutes=1)).isoformat(),
        },
    )
    assert result.batch == drift_metrics.WINDOW_BATCH and result.rows == 800
    assert result.window_start is not None and result.roc_auc is None  # the log has no labels
    with pytest.raises(monitored_inputs.MonitorInputError, match="no predictions logged"):
        drift_metrics.monitor(fresh_settings, window=(now - timedelta(days=30), now - timedelta(days=29)))


def test_every_panel_and_alert_query_runs_on_the_filled_schema(fresh_settings: config.Settings) -> None:
    """Runs after the monitor tests above: monitor runs, column drift and a prediction log exist."""
    retrain.receive(fresh_settings, webhook("webhook-resolved.json"))  # the alerts panel's rows
    end = datetime.now(UTC) + timedelta(minutes=1)
    start = end - timedelta(days=7)
    dashboard = load_provisioning("dashboards/model-monitoring.json")
    queries = {
        f"panel {panel['id']} ({panel['title']})": target["rawSql"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }
    rule = alerting.load_rule(fresh_settings)
    queries |= {f"alert query {ref}": sql for ref, sql in rule.queries.items()}
    variables = {"model": fresh_settings.training.model_name}  # the dashboard's model variable
    eng = sa.create_engine(store.normalise_url(fresh_settings.monitoring_db))
    try:
        with eng.connect() as conn:
            for name, sql in queries.items():
                expanded = alerting.expand_macros(alerting.expand_variables(sql, variables), start, end)
                rows = conn.execute(sa.text(expanded)).fetchall()
                assert rows, f"{name} returned no rows"
            models = conn.execute(sa.text(dashboard["templating"]["list"][0]["query"])).scalars().all()
            assert fresh_settings.training.model_name in models
    finally:
        eng.dispose()


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda f: f.drop(columns=["age"]), "missing feature column"),
        (lambda f: f.assign(balance=f["balance"].astype(object).where(f.index % 7 != 0, "lots")), "balance: not a"),
        (lambda f: f.assign(y=f["y"].where(f.index % 5 != 0, "maybe")), "label not in"),
        (lambda f: f.iloc[0:0], "no rows"),
    ],
    ids=["missing-column", "text-in-number", "unknown-label", "empty"],
)
def test_a_schema_breaking_batch_fails_clearly_and_writes_nothing(
    champion: str, fresh_settings: config.Settings, breakage, message: str
) -> None:
    broken = breakage(preparation.load_batch(fresh_settings, "summer").head(500).reset_index(drop=True))
    before = counts(fresh_settings)
    reports = set(fresh_settings.drift_reports_dir.glob("*.html"))
    with pytest.raises(monitored_inputs.MonitorInputError, match=message):
        drift_metrics.monitor(fresh_settings, batch="broken", frame=broken)
    assert counts(fresh_settings) == before
    assert set(fresh_settings.drift_reports_dir.glob("*.html")) == reports


def test_a_corrupt_batch_file_fails_clearly(champion: str, fresh_settings: config.Settings) -> None:
    path = fresh_settings.prepared_dir / "batches" / "corrupt.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    try:
        before = counts(fresh_settings)
        with pytest.raises(monitored_inputs.MonitorInputError, match="cannot be read"):
            drift_metrics.monitor(fresh_settings, batch="corrupt")
        assert counts(fresh_settings) == before
    finally:
        path.unlink()


def test_a_batch_name_is_not_a_path(champion: str, fresh_settings: config.Settings) -> None:
    assert (fresh_settings.prepared_dir / "train.parquet").is_file()  # what `../train` would have reached
    store.migrate(fresh_settings.monitoring_db)
    before = counts(fresh_settings)
    for name in ("../train", "../batches/summer", "/etc/passwd"):
        with pytest.raises(monitored_inputs.MonitorInputError, match="no batch"):
            drift_metrics.monitor(fresh_settings, batch=name)
    assert counts(fresh_settings) == before


def test_a_window_of_the_log_is_monitored_through_mage(
    champion: str, fresh_settings: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline, not only the function: Mage failed reading back a block output holding None (#12, 6)."""
    now = datetime.now(UTC)
    log_predictions(fresh_settings, preparation.load_batch(fresh_settings, "summer").head(300), champion, now)
    monkeypatch.setenv("MLOPS_STORES__MONITORING_DB", fresh_settings.monitoring_db)
    monkeypatch.setenv("MLOPS_MONITORING__REPORTS_DIR", str(fresh_settings.drift_reports_dir))
    store.migrate(fresh_settings.monitoring_db)
    before = counts(fresh_settings)
    window = {
        "window_start": (now - timedelta(minutes=5)).isoformat(),
        "window_end": (now + timedelta(minutes=1)).isoformat(),
    }
    assert orchestration.run_headless(fresh_settings, "monitor", window) == 0
    assert counts(fresh_settings)[0] == before[0] + 1


def test_a_column_with_no_value_in_the_batch_is_drifted_not_a_crash(
    champion: str, fresh_settings: config.Settings
) -> None:
    """Evidently refuses an empty column; a feed that lost a column entirely is the clearest drift there is."""
    store.migrate(fresh_settings.monitoring_db)
    frame = preparation.load_batch(fresh_settings, "fall").head(600).assign(contact=None)
    result = drift_metrics.monitor(fresh_settings, batch="contact-lost", frame=frame)
    by_column = {c.column: c for c in result.columns}
    assert by_column["contact"].drifted and by_column["contact"].method == drift_metrics.EMPTY_METHOD
    assert sorted(c.column for c in result.columns) == sorted(
        [*fresh_settings.dataset.features, drift_metrics.PREDICTION]
    )


def test_the_reference_is_rows_the_champion_never_saw_and_its_noise_sets_the_threshold(
    champion: str, fresh_settings: config.Settings
) -> None:
    """#12, 7: drift is measured against validation and test (never the training rows), and the alert
    threshold rises to what a same-population sample of the batch's size shows by chance."""
    model = drift_metrics.champion(fresh_settings)
    reference = drift_reference.unseen_reference(fresh_settings, model.pipeline)
    parts = [preparation.load_split(fresh_settings, name) for name in ("validation", "test")]
    assert len(reference) == sum(len(p) for p in parts)
    train_ids = set(map(tuple, preparation.load_split(fresh_settings, "train").astype(str).values.tolist()))
    assert not any(tuple(row) in train_ids for row in parts[1].astype(str).values.tolist()[:500])
    scores = reference[drift_reference.PREDICTION].to_numpy()
    small, small_noise = drift_reference.prediction_threshold(fresh_settings, scores, 30)
    large, large_noise = drift_reference.prediction_threshold(fresh_settings, scores, 3000)
    assert small_noise > large_noise > 0  # fewer rows, more chance drift
    floor, multiplier = fresh_settings.monitoring.prediction_drift_threshold, fresh_settings.monitoring.noise_multiplier
    assert small == max(floor, multiplier * small_noise) and large == max(floor, multiplier * large_noise)
    # 30 rows of the same population: the threshold covers what they measure against the rest
    rng = np.random.default_rng(0)
    sample = scores[rng.choice(len(scores), 30, replace=False)]
    assert drift_reference.wasserstein_normed(scores, sample) < small
