"""The prediction log: every scored record to ``store.predictions``, written off the request path.

A request hands its whole batch to :meth:`PredictionLog.submit` (one queue put); a background thread
turns batches into rows and inserts them ``log_batch_size`` at a time, at least every
``log_flush_seconds``. When the database cannot take them, the rows go to the spool folder as JSON-lines
files (written to a temporary name, then renamed, so a reader never sees half a file) and the predictor
keeps serving. Once the database answers again the spooled files are replayed. Inserts skip rows whose
``(request_id, record_index)`` is already stored, so a replay interrupted half-way never duplicates
rows: N scored records leave exactly N rows. :meth:`close` drains the queue (gunicorn's ``worker_exit``
hook calls :func:`close_all`), so a graceful reload or shutdown loses nothing.

A crash loses nothing either, and a full disk refuses, it never loses: before an answer is sent,
:meth:`PredictionLog.journal` appends its rows to this process's journal in the spool folder, or raises
:class:`~mlops.core.serving.prediction_spool.JournalUnavailable` so the request is answered 503;
:meth:`PredictionLog.problem` names the reason for ``/ready``. The journal, spool files, their claims and the
recovery of dead processes' files are :mod:`mlops.core.serving.prediction_spool`.
The writer thread never dies: any failure (database down and spool full) is logged, its rows stay in memory
and in their journals, and it retries with backoff, so it resumes by itself when the disk or the database
comes back.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlops.core.monitoring import store
from mlops.core.serving import prediction_spool
from mlops.core.serving.prediction_spool import REJECTED_SUFFIX, Journal, JournalSegment
from mlops.core.serving.prediction_spool import spooled_files as spooled_files  # still read here by benchmarks/soak.py

log = logging.getLogger(__name__)
BULK_ROWS = 5000  # rows per INSERT statement (one JSON document each)
MAX_BACKOFF_SECONDS = 5.0
SPOOL_RETRY_SECONDS = 30.0  # after the spool disk refused a file: rows wait in their journals this long


@dataclass(frozen=True)
class ScoredBatch:
    """What one request scored: one row per record."""

    request_id: str
    scored_at: datetime
    model_name: str
    model_version: str
    records: Sequence[dict[str, Any]]
    probabilities: Sequence[float]
    decisions: Sequence[bool]

    def rows(self) -> Iterator[dict[str, Any]]:
        for index, (record, probability, decision) in enumerate(
            zip(self.records, self.probabilities, self.decisions, strict=True)
        ):
            yield {
                "request_id": self.request_id,
                "record_index": index,
                "scored_at": self.scored_at,
                "model_name": self.model_name,
                "model_version": self.model_version,
                "inputs": record,
                "probability": float(probability),
                "decision": bool(decision),
            }


_STOP = object()
_open_logs: list[PredictionLog] = []


class PredictionLog:
    def __init__(self, url: str, spool_dir: Path, batch_size: int = 500, flush_seconds: float = 1.0) -> None:
        self.url = url
        self.spool_dir = spool_dir
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._engine: Engine | None = None
        self._migrated = False
        self._last_replay = 0.0
        self.written = 0  # rows this process inserted (spool replays included)
        self.spooled = 0  # rows this process sent to the spool
        self._journal = Journal(spool_dir, flush_seconds)
        self.writer_problem = ""  # why the writer's last attempt failed ("" once one succeeds)
        self.writer_failures = 0
        self._spool_refused_at = -SPOOL_RETRY_SECONDS  # monotonic time the spool last failed (disk full)

    def start(self) -> PredictionLog:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        prediction_spool.remove_stale_parts(self.spool_dir)
        prediction_spool.release_stale_claims(self.spool_dir)
        prediction_spool.recover_journals(self.spool_dir)
        self._thread.start()
        _open_logs.append(self)
        return self

    def journal(self, batch: ScoredBatch) -> JournalSegment:
        """Write-ahead: the batch's rows on disk before its answer is sent; pass the result to :meth:`submit`."""
        return self._journal.append(batch.rows())

    def problem(self) -> str:
        """Why requests would be refused now ("" if none): the journal cannot be written, or the writer
        thread is gone. A failing journal is probed again (a small write) so the answer clears by itself."""
        if not self._thread.is_alive():
            return "the prediction log's writer thread is not running"
        return self._journal.problem()

    def submit(self, batch: ScoredBatch, segment: JournalSegment | None = None) -> None:
        """Hand a scored batch to the writer (never blocks, never touches the database)."""
        self._queue.put((batch, segment))

    def _settle(self, segments: list[JournalSegment]) -> None:
        """These batches are in the database or the spool: delete journal segments nothing waits on."""
        self._journal.settle(segments)

    def close(self, timeout: float = 30.0) -> None:
        """Write (or spool) everything submitted so far and stop the writer."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)
        if self in _open_logs:
            _open_logs.remove(self)
        if self._engine is not None:
            self._engine.dispose()

    # -- the writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        pending: list[dict[str, Any]] = []
        segments: list[JournalSegment] = []
        deadline = 0.0
        retry_at = 0.0  # after a failure: not before this (backoff)
        stopping = False
        while not stopping:
            now = time.monotonic()
            wait = self.flush_seconds if not pending else max(0.0, max(deadline, retry_at) - now)
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is _STOP:
                stopping = True
            elif item is not None:
                if not pending:
                    deadline = time.monotonic() + self.flush_seconds
                batch, segment = item
                pending.extend(batch.rows())
                if segment is not None:
                    segments.append(segment)
            now = time.monotonic()
            if not stopping and now < retry_at:
                continue
            try:  # nothing may end this thread: its rows stay in memory and in their journals until written
                if pending and (stopping or len(pending) >= self.batch_size or now >= deadline):
                    self._write(pending)
                    self._settle(segments)
                    pending, segments = [], []
                if not pending and not stopping and now - self._last_replay >= self.flush_seconds:
                    prediction_spool.recover_journals(self.spool_dir)
                    self._replay_spool()
                    prediction_spool.remove_stale_parts(self.spool_dir)
                if self.writer_failures:
                    log.warning("prediction log: writing again after %d failed attempts", self.writer_failures)
                self.writer_failures, self.writer_problem = 0, ""
            except Exception as exc:
                self.writer_failures += 1
                self.writer_problem = f"{exc.__class__.__name__}: {exc}"
                delay = min(self.flush_seconds * 2 ** min(self.writer_failures - 1, 10), MAX_BACKOFF_SECONDS)
                retry_at = time.monotonic() + delay
                self._last_replay = time.monotonic()
                log.error(
                    "prediction log: writing failed (attempt %d; %d rows kept, still in their journals); "
                    "retrying in %.1f s: %s",
                    self.writer_failures,
                    len(pending),
                    delay,
                    self.writer_problem,
                    exc_info=self.writer_failures == 1,  # the traceback once, then one line per attempt
                )

    def _write(self, rows: list[dict[str, Any]]) -> None:
        """Insert, or spool when the database cannot take them; raises when neither works (rows kept)."""
        try:
            self._insert(rows)
        except Exception as exc:  # any database failure: keep the rows on disk, never lose them
            log.warning(
                "prediction log: database unavailable (%s); spooling %d rows", exc.__class__.__name__, len(rows)
            )
            self._migrated = False
            if time.monotonic() - self._spool_refused_at < SPOOL_RETRY_SECONDS:
                # The rows are in their journals already: copying them into a spool the disk just refused
                # would fill it again and again, refusing the requests that journal meanwhile.
                raise OSError(f"database down, spool disk full: {len(rows)} rows wait") from exc
            try:
                self._spool(rows)
            except OSError:
                self._spool_refused_at = time.monotonic()
                raise

    def _connect(self) -> Engine:
        if self._engine is None:
            engine = store.engine(self.url)
            if engine.dialect.name == "postgresql":  # an unreachable host must fail fast, not hang the writer
                engine.dispose()
                engine = sa.create_engine(
                    store.normalise_url(self.url), pool_pre_ping=True, connect_args={"connect_timeout": 5}
                )
            self._engine = engine
        if not self._migrated:
            store.migrate(self.url)  # idempotent; also recreates the tables of a recreated database
            self._migrated = True
        return self._engine

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        """One statement per chunk: the rows travel as one JSON document that the database unpacks
        (~30x faster than an executemany of as many rows, which matters for 100k-row batches)."""
        engine = self._connect()
        statement = _bulk_insert_statement(engine)
        to_db_time = store.predictions.c.scored_at.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
        chunk_size = max(self.batch_size, BULK_ROWS)
        for start in range(0, len(rows), chunk_size):
            chunk = rows[start : start + chunk_size]
            document = json.dumps(
                [
                    {**row, "scored_at": to_db_time(row["scored_at"]) if to_db_time else row["scored_at"].isoformat()}
                    for row in chunk
                ]
            )
            with engine.begin() as conn:
                conn.execute(statement, {"rows": document})
            self.written += len(chunk)
        # A failure after some chunks committed spools all rows: the replay skips those already stored.

    def _spool(self, rows: list[dict[str, Any]]) -> None:
        prediction_spool.spool(self.spool_dir, rows)
        self.spooled += len(rows)

    def _replay_spool(self) -> None:
        """Insert spooled files (oldest first) once the database answers; stop at the first failure."""
        self._last_replay = time.monotonic()
        for path in prediction_spool.waiting_files(self.spool_dir):
            claimed = prediction_spool.claim(path)
            if claimed is None:
                continue
            rows = prediction_spool.rows_of(claimed)
            try:
                self._insert(rows)
            except Exception:
                self._migrated = False
                if not self._database_answers():
                    claimed.rename(path)
                    return
                # The database is up but refuses this file: insert row by row, so one bad row cannot block
                # every later file; the refused rows stay on disk beside the spool (<file>.rejected).
                self._insert_each(rows, path.with_name(path.name + REJECTED_SUFFIX))
            claimed.unlink()
            log.info("prediction log: replayed %d spooled rows from %s", len(rows), path.name)

    def _database_answers(self) -> bool:
        try:
            with self._connect().connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    def _insert_each(self, rows: list[dict[str, Any]], rejected: Path) -> None:
        refused = []
        for row in rows:
            try:
                self._insert([row])
            except Exception as exc:
                refused.append(row)
                log.error(
                    "prediction log: the database refuses a row (%s); kept in %s", exc.__class__.__name__, rejected
                )
        if refused:
            prediction_spool.keep_rejected(rejected, refused)


_COLUMNS = (
    "request_id",
    "record_index",
    "scored_at",
    "model_name",
    "model_version",
    "inputs",
    "probability",
    "decision",
)


def _bulk_insert_statement(engine: Engine) -> sa.TextClause:
    """``INSERT .. SELECT`` from a JSON array of rows, skipping ``(request_id, record_index)`` already stored."""
    columns = ", ".join(_COLUMNS)
    if engine.dialect.name == "postgresql":
        return sa.text(
            f"INSERT INTO {store.predictions.fullname} ({columns}) SELECT {columns} "
            "FROM json_to_recordset(CAST(:rows AS json)) AS r(request_id text, record_index integer, "
            "scored_at timestamptz, model_name text, model_version text, inputs json, probability float8, "
            "decision boolean) ON CONFLICT (request_id, record_index) DO NOTHING"
        )
    if engine.dialect.name == "sqlite":  # no schemas on SQLite (see store.engine)
        extracted = ", ".join(f"json_extract(value, '$.{name}')" for name in _COLUMNS)
        return sa.text(
            f"INSERT INTO {store.predictions.name} ({columns}) SELECT {extracted} FROM json_each(:rows) "
            "WHERE true ON CONFLICT (request_id, record_index) DO NOTHING"
        )
    raise ValueError(f"the prediction log supports PostgreSQL and SQLite, not {engine.dialect.name}")


def close_all(timeout: float = 30.0) -> None:
    """Drain every open prediction log of this process (gunicorn ``worker_exit``, interpreter exit)."""
    for prediction_log in list(_open_logs):
        prediction_log.close(timeout)


atexit.register(close_all)
