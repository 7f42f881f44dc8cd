"""The prediction log against a real PostgreSQL: the predictor keeps serving while its database refuses
connections, spools to disk, and flushes once the database is back; a graceful stop writes what is queued."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from mlops.core import config, services
from mlops.core.monitoring import store
from mlops.core.serving import prediction_log, prediction_spool, scoring
from mlops.testing.payloads import write_local_payload

from .conftest import Predictor


@pytest.fixture(scope="module")
def small_payload(bank_frame, fit_small, settings, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    split = settings.dataset.split
    reference = bank_frame[bank_frame[split.column].isin(split.reference)].head(5000)
    pipeline = fit_small("xgboost", reference, settings)
    return write_local_payload(tmp_path_factory.mktemp("payload"), pipeline, "3", reference, settings, "xgboost")


@pytest.fixture(scope="module")
def records(bank_frame: pd.DataFrame, settings: config.Settings) -> list[dict[str, Any]]:
    return scoring.frame_records(bank_frame.sample(100, random_state=11), settings.dataset.features)


def count_rows(url: str) -> int:
    engine = store.engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(store.predictions)).scalar_one())
    finally:
        engine.dispose()


def set_connections_allowed(server_url: str, database: str, allowed: bool) -> None:
    """Open or close a database to new connections; closing also ends the connections it has."""
    engine = sa.create_engine(store.normalise_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}'))
            if not allowed:
                conn.execute(
                    sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                    {"d": database},
                )
    finally:
        engine.dispose()


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return condition()


def test_database_outage_spools_and_flushes_later(
    small_payload: Path,
    records: list[dict[str, Any]],
    start_predictor: Callable[..., Predictor],
    make_database: Callable[[str], str],
    postgres_server: str,
) -> None:
    url = make_database("predlog")
    database = sa.make_url(url).database
    assert database
    store.migrate(url)
    predictor = start_predictor(
        small_payload, env={"MLOPS_STORES__MONITORING_DB": url, "MLOPS_SERVING__LOG_FLUSH_SECONDS": "0.2"}
    )
    for i in range(20):
        assert predictor.post("/predict", json=records[i]).status_code == 200
    assert wait_until(lambda: count_rows(url) == 20)

    set_connections_allowed(postgres_server, database, False)
    try:
        with pytest.raises(sa.exc.OperationalError):
            count_rows(url)
        for i in range(25):  # two records each: 50 rows to keep
            response = predictor.post("/predict", json=records[2 * i : 2 * i + 2])
            assert response.status_code == 200, response.text
        assert wait_until(lambda: len(prediction_spool.spooled_files(predictor.spool_dir)) > 0)
    finally:
        set_connections_allowed(postgres_server, database, True)

    assert wait_until(lambda: count_rows(url) == 70 and not prediction_spool.spooled_files(predictor.spool_dir))
    time.sleep(1)
    assert count_rows(url) == 70  # exactly: replays never duplicate


def test_a_graceful_stop_writes_what_is_queued(
    small_payload: Path,
    records: list[dict[str, Any]],
    start_predictor: Callable[..., Predictor],
    make_database: Callable[[str], str],
) -> None:
    url = make_database("predlog_stop")
    store.migrate(url)
    # Batches far larger than the traffic and a long interval: only the exit flush can write the rows.
    predictor = start_predictor(
        small_payload,
        env={
            "MLOPS_STORES__MONITORING_DB": url,
            "MLOPS_SERVING__LOG_FLUSH_SECONDS": "600",
            "MLOPS_SERVING__LOG_BATCH_SIZE": "100000",
        },
    )
    for i in range(15):
        assert predictor.post("/predict", json=records[i]).status_code == 200
    time.sleep(1)
    assert count_rows(url) == 0  # still queued in the workers
    predictor.process.stop()
    assert not predictor.process.alive()
    assert count_rows(url) == 15
    assert not services.port_in_use(int(predictor.url.rsplit(":", 1)[1]))


KILLED_WRITER = """
import os, signal, sys
from datetime import UTC, datetime
from pathlib import Path
from mlops.core.serving.prediction_log import PredictionLog, ScoredBatch

log = PredictionLog(sys.argv[1], Path(sys.argv[2]), batch_size=500, flush_seconds=3600).start()
records = [{"age": n} for n in range(int(sys.argv[3]))]
batch = ScoredBatch("killed-request", datetime.now(UTC), "m", "1", records, [0.5] * len(records), [True] * len(records))
log.journal(batch)  # what the predictor does before the answer leaves; the writer never gets to it
print("answered", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.postgres
def test_rows_answered_by_a_killed_process_are_recovered_once(make_database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL after the journal write and before the database write: the next process stores every row, once."""
    url = make_database("journal")
    spool = tmp_path / "spool"
    child = subprocess.run([sys.executable, "-c", KILLED_WRITER, url, str(spool), "7"], capture_output=True, text=True)
    assert child.returncode == -9 and "answered" in child.stdout, child.stderr
    assert count_rows_or_zero(url) == 0
    survivor = prediction_log.PredictionLog(url, spool, flush_seconds=0.2).start()
    try:
        assert wait_until(lambda: count_rows_or_zero(url) == 7, timeout=30)
        prediction_spool.recover_journals(spool)  # a second pass finds nothing more to add
        time.sleep(1)
        assert count_rows_or_zero(url) == 7
    finally:
        survivor.close()
    assert not list(spool.glob("journal-*")) and not prediction_spool.spooled_files(spool)


def count_rows_or_zero(url: str) -> int:
    try:
        return count_rows(url)
    except sa.exc.ProgrammingError:  # the tables come with the first write
        return 0
