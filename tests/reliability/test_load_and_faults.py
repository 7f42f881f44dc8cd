"""Load without loss, and fault drills: the monitoring database stopped under load, MLflow stopped, a
monitoring batch that is corrupt or breaks the schema."""

from __future__ import annotations

import http.client
import json
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from mlops.core import config, services
from mlops.core.lifecycle import promotion
from mlops.core.monitoring import drift_metrics, monitored_inputs, store
from mlops.core.serving import prediction_log, prediction_spool
from mlops.testing.drills import ThrowawayPostgres, load, logged_rows, slow_clients, wait_for_rows, worker_kill

from .conftest import Predictor

pytestmark = [pytest.mark.postgres]


@pytest.fixture(scope="module")
def monitoring_db(throwaway_postgres: ThrowawayPostgres) -> str:
    return throwaway_postgres.database("load")


RELOAD_TOKEN = secrets.token_hex(16)


@pytest.fixture(scope="module")
def predictor(start_predictor: Callable[..., Predictor], small_payload: Path, monitoring_db: str) -> Predictor:
    env = {"MLOPS_STORES__MONITORING_DB": monitoring_db, "MLOPS_SECRETS__RELOAD_TOKEN": RELOAD_TOKEN}
    return start_predictor(small_payload, env=env)


def test_every_scored_record_is_logged_under_load(
    predictor: Predictor, monitoring_db: str, sample_records: list[dict[str, Any]]
) -> None:
    before = logged_rows(monitoring_db)
    result = load(predictor.url, sample_records, threads=8, per_thread=40)
    assert result.errors == [] and dict(result.statuses) == {200: result.requests_sent}
    assert result.requests_sent == 320
    assert wait_for_rows(monitoring_db, before + result.records_sent) == before + result.records_sent
    assert logged_rows(monitoring_db, result.request_ids) == result.records_sent
    latency = result.percentiles()
    assert latency["p50"] < 1000, latency  # loose: two shared cores; the soak records the real numbers


def test_a_worker_killed_under_load_loses_and_duplicates_no_answered_prediction(
    predictor: Predictor, monitoring_db: str, sample_records: list[dict[str, Any]]
) -> None:
    outcome = worker_kill(
        predictor.url, predictor.process.pid, monitoring_db, sample_records, threads=4, per_thread=100
    )
    assert outcome["killed_worker"] is not None and outcome["answered"] > 0
    assert (outcome["lost"], outcome["duplicated"]) == (0, 0), outcome
    assert outcome["logged"] == outcome["answered"]


def test_keep_alive_connections_are_reused_and_do_not_hold_a_stop(
    start_predictor: Callable[..., Predictor], small_payload: Path, sample_records: list[dict[str, Any]]
) -> None:
    """A client sends its requests on one connection; stopping the predictor while that connection is idle
    takes seconds, not graceful_timeout (30 s, after which the supervisor SIGKILLs and the exit flush of the
    prediction log is lost)."""
    own = start_predictor(small_payload)
    where = urlsplit(own.url)
    connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=30)
    for record in sample_records[:5]:
        connection.request("POST", "/predict", json.dumps(record), {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200, response.read()[:200]
        response.read()
        assert not response.will_close  # the next request goes on the same socket
    local_port = connection.sock.getsockname()[1]
    connection.request("GET", "/health")
    connection.getresponse().read()
    assert connection.sock.getsockname()[1] == local_port  # still the first connection: never reopened
    started = time.monotonic()
    own.process.stop(timeout=25)
    stopped_in = time.monotonic() - started
    connection.close()
    assert not own.process.alive()
    assert stopped_in < 10, f"stopping took {stopped_in:.1f} s with an idle keep-alive connection open"


def test_slow_clients_do_not_starve_the_predictor(
    predictor: Predictor, monitoring_db: str, sample_records: list[dict[str, Any]]
) -> None:
    """50 connections send a body one byte every 2 s while 4 normal clients send 200 requests."""
    drill = slow_clients(predictor.url, sample_records, slow=50, threads=4, per_thread=50)
    outcome = drill.summary()
    assert outcome["slow_still_open"] == 50  # they were held, not dropped
    assert outcome["answered_share"] >= 0.99, outcome
    ids = drill.normal.request_ids  # and every answer is logged before the next test counts rows
    deadline = time.monotonic() + 30
    while logged_rows(monitoring_db, ids) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert logged_rows(monitoring_db, ids) == len(ids) == 200


def test_the_database_stopped_under_load_loses_nothing(
    predictor: Predictor,
    monitoring_db: str,
    throwaway_postgres: ThrowawayPostgres,
    sample_records: list[dict[str, Any]],
) -> None:
    before = logged_rows(monitoring_db)
    spooled_while_down: list[int] = []

    def outage() -> None:
        time.sleep(1.0)
        throwaway_postgres.stop()
        time.sleep(4.0)  # the load goes on against a dead database
        spooled_while_down.append(len(prediction_spool.spooled_files(predictor.spool_dir)))
        throwaway_postgres.start()

    try:
        result = load(predictor.url, sample_records, threads=8, per_thread=60, during=outage)
    finally:
        if not services.postgres_reachable(throwaway_postgres.server_url):
            throwaway_postgres.start()
    assert result.errors == [] and dict(result.statuses) == {200: result.requests_sent}  # it kept answering
    assert spooled_while_down and spooled_while_down[0] > 0, "nothing was spooled while the database was down"
    expected = before + result.records_sent
    assert wait_for_rows(monitoring_db, expected, timeout=90) == expected  # replayed, no row lost or doubled
    assert logged_rows(monitoring_db, result.request_ids) == result.records_sent
    deadline = time.monotonic() + 30
    while prediction_spool.spooled_files(predictor.spool_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert prediction_spool.spooled_files(predictor.spool_dir) == []


# ---- MLflow stopped ---------------------------------------------------------------------------------------


def test_mlflow_stopped_the_predictor_serves_its_pinned_model_and_deploy_fails_cleanly(
    predictor: Predictor,
    settings: config.Settings,
    sample_records: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # MLflow down: nothing listens where the tracking URI points (the predictor was started without it too)
    port = services.free_port()
    url = f"http://127.0.0.1:{port}"
    assert not services.port_in_use(port)
    served = predictor.get("/model").json()["version"]
    # The predictor scores from its payload: no MLflow on the request path, nor on a reload.
    assert predictor.post("/predict", json=sample_records[:3]).status_code == 200
    reload = predictor.post("/reload", headers={"Authorization": f"Bearer {RELOAD_TOKEN}"})
    assert reload.status_code == 202, reload.text
    time.sleep(2)  # new workers load the payload from disk
    services.wait_http(f"{predictor.url}/ready", predictor.process, timeout=60)
    assert predictor.post("/predict", json=sample_records[:3]).status_code == 200
    assert predictor.get("/model").json()["version"] == served

    # Deploy against the stopped server: an error that names the server, quickly, and nothing changed.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    payload = settings.serving.model_copy(update={"payload_dir": predictor.spool_dir.parent / "deploy-payload"})
    offline = settings.model_copy(
        update={"stores": settings.stores.model_copy(update={"tracking_uri": url}), "serving": payload}
    )
    started = time.monotonic()
    with pytest.raises(Exception) as failure:  # whatever MLflow raises; the message is checked
        promotion.promote_if_better(offline)
    assert time.monotonic() - started < 120
    message = str(failure.value)
    print(f"deploy with MLflow down: {failure.type.__name__}: {message[:400]}")
    assert url.split("//", 1)[1] in message and ("refused" in message.lower() or "connect" in message.lower()), message
    assert not (predictor.spool_dir.parent / "deploy-payload").exists()  # no half-written payload
    assert predictor.post("/predict", json=sample_records[0]).status_code == 200


# ---- monitoring batches -----------------------------------------------------------------------------------


def monitor_counts(url: str) -> tuple[int, int]:
    eng = store.engine(url)
    try:
        with eng.connect() as conn:
            runs = conn.execute(sa.select(sa.func.count()).select_from(store.monitor_runs)).scalar_one()
            cols = conn.execute(sa.select(sa.func.count()).select_from(store.column_drift)).scalar_one()
    finally:
        eng.dispose()
    return int(runs), int(cols)


@pytest.fixture(scope="module")
def monitor_settings(
    throwaway_postgres: ThrowawayPostgres, tmp_path_factory: pytest.TempPathFactory
) -> config.Settings:
    import os

    folder = tmp_path_factory.mktemp("monitor")
    (folder / "prepared" / "batches").mkdir(parents=True)
    env = {
        **os.environ,
        "MLOPS_STORES__MONITORING_DB": throwaway_postgres.database("monitor"),
        "MLOPS_PATHS__WORK_DIR": str(folder),
        "MLOPS_MONITORING__REPORTS_DIR": str(folder / "reports"),
    }
    settings = config.load(environ=env)
    store.migrate(settings.monitoring_db)
    return settings


def test_a_truncated_batch_file_fails_clearly_and_writes_nothing(monitor_settings: config.Settings, bank_frame) -> None:  # type: ignore[no-untyped-def]
    batches = monitor_settings.prepared_dir / "batches"
    batches.mkdir(parents=True, exist_ok=True)
    whole = batches / "whole.parquet"
    bank_frame.head(2000).to_parquet(whole, index=False)
    (batches / "truncated.parquet").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    before = monitor_counts(monitor_settings.monitoring_db)
    with pytest.raises(monitored_inputs.MonitorInputError, match="'truncated' cannot be read"):
        drift_metrics.monitor(monitor_settings, batch="truncated")
    assert monitor_counts(monitor_settings.monitoring_db) == before


def test_a_write_that_fails_half_way_leaves_no_partial_rows(monitor_settings: config.Settings) -> None:
    """The run row and its column rows are one transaction: a column row the database refuses takes the
    run row with it."""
    good = drift_metrics.ColumnDrift("age", "K-S p_value", 0.2, 0.05, False)
    refused = drift_metrics.ColumnDrift(None, "K-S p_value", 0.2, 0.05, False)  # type: ignore[arg-type]  # NOT NULL
    result = drift_metrics.MonitorResult(
        batch="half-written",
        model_name="m",
        model_version="1",
        rows=10,
        sample_rows=10,
        drifted_columns=0,
        drifted_share=0.0,
        dataset_drift=False,
        prediction_drift=0.01,
        prediction_drift_method="wasserstein",
        missing_share=0.0,
        columns=[good, refused],
        report_uri="file:///nowhere.html",
    )
    before = monitor_counts(monitor_settings.monitoring_db)
    with pytest.raises(sa.exc.IntegrityError):
        drift_metrics.write(monitor_settings, result, datetime.now(UTC))
    assert monitor_counts(monitor_settings.monitoring_db) == before


def test_a_row_the_database_refuses_does_not_block_the_spool(
    throwaway_postgres: ThrowawayPostgres, tmp_path: Path, sample_records: list[dict[str, Any]]
) -> None:
    """Found by the soak: one row PostgreSQL refuses (text with NUL) used to stop every later replay."""
    url = throwaway_postgres.database("poison")
    log = prediction_log.PredictionLog(url, tmp_path / "spool", batch_size=50, flush_seconds=0.2)

    def batch(records: list[dict[str, Any]]) -> prediction_log.ScoredBatch:
        n = len(records)
        return prediction_log.ScoredBatch(
            secrets.token_hex(8), datetime.now(UTC), "m", "1", records, [0.5] * n, [True] * n
        )

    poisoned = [dict(r) for r in sample_records[:10]]
    poisoned[4]["month"] = "ma\x00y"
    log.spool_dir.mkdir(parents=True)
    log._spool(list(batch(poisoned).rows()))  # as the writer spools rows while the database is down
    log._spool(list(batch(sample_records[10:30]).rows()))
    log.start()
    try:
        assert wait_for_rows(url, 29, timeout=30) == 29  # every row but the refused one
    finally:
        log.close()
    assert prediction_spool.spooled_files(log.spool_dir) == []
    (rejected,) = log.spool_dir.glob(f"*{prediction_spool.REJECTED_SUFFIX}")
    assert "ma\\u0000y" in rejected.read_text()
