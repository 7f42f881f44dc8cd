"""The monitoring database: prediction log, model events, evaluations, drift metrics, alerts.

One SQLAlchemy URL selects the backend: SQLite in the embedded default, PostgreSQL in compose. Tables live
in the ``monitoring`` schema on PostgreSQL; SQLite has no schemas, so the same tables are unqualified
there (``schema_translate_map``). The schema is created and upgraded by Alembic migrations
(``mlops/core/monitoring/migrations``), applied idempotently by :func:`migrate`.

The one way in: ``with store.connection(url) as conn`` to read, ``with store.transaction(url) as conn`` to
write (committed at the end, rolled back on an error). Both migrate the schema first, once per process and
URL, and dispose their engine afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import Engine

SCHEMA = "monitoring"
MIGRATIONS = Path(__file__).with_name("migrations")
_ADVISORY_LOCK = 7_351_204  # serialises concurrent migrations on PostgreSQL

metadata = sa.MetaData(schema=SCHEMA)
_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER keys only
_when = sa.DateTime(timezone=True)

model_events = sa.Table(
    "model_events",
    metadata,
    sa.Column("id", _id, primary_key=True, autoincrement=True),
    sa.Column("occurred_at", _when, nullable=False, server_default=sa.func.current_timestamp()),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("version", sa.String(32)),
    sa.Column("action", sa.String(32), nullable=False),  # registered, promoted, rejected, rolled_back, ...
    sa.Column("alias", sa.String(64)),
    sa.Column("previous_version", sa.String(32)),
    sa.Column("metric", sa.String(64)),
    sa.Column("candidate_value", sa.Float),
    sa.Column("champion_value", sa.Float),
    sa.Column("reason", sa.Text),
    sa.Column("details", sa.JSON),
)

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", _id, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("record_index", sa.Integer, nullable=False, server_default="0"),
    sa.Column("scored_at", _when, nullable=False),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("decision", sa.Boolean, nullable=False),
    sa.UniqueConstraint("request_id", "record_index", name="uq_predictions_request_record"),
)

evaluations = sa.Table(
    "evaluations",
    metadata,
    sa.Column("id", _id, primary_key=True, autoincrement=True),
    sa.Column("evaluated_at", _when, nullable=False, server_default=sa.func.current_timestamp()),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("dataset", sa.String(200), nullable=False),  # test, or a batch name
    sa.Column("source", sa.String(64), nullable=False),  # which pipeline measured it
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("roc_auc", sa.Float),
    sa.Column("pr_auc", sa.Float),
    sa.Column("f1", sa.Float),
    sa.Column("lift", sa.Float),
    sa.Column("threshold", sa.Float),
)

monitor_runs = sa.Table(
    "monitor_runs",
    metadata,
    sa.Column("id", _id, primary_key=True, autoincrement=True),
    sa.Column("computed_at", _when, nullable=False, server_default=sa.func.current_timestamp()),
    sa.Column("batch", sa.String(200), nullable=False),
    sa.Column("window_start", _when),
    sa.Column("window_end", _when),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("sample_rows", sa.Integer),  # the rows Evidently compared (migration 0003; NULL before it)
    sa.Column("drifted_columns", sa.Integer, nullable=False),
    sa.Column("drifted_share", sa.Float, nullable=False),
    sa.Column("dataset_drift", sa.Boolean, nullable=False),
    sa.Column("prediction_drift", sa.Float),
    sa.Column("prediction_drift_method", sa.String(64)),
    sa.Column("missing_share", sa.Float),
    sa.Column("roc_auc", sa.Float),
    sa.Column("pr_auc", sa.Float),
    sa.Column("f1", sa.Float),
    sa.Column("report_uri", sa.Text),
)

column_drift = sa.Table(
    "column_drift",
    metadata,
    sa.Column("id", _id, primary_key=True, autoincrement=True),
    sa.Column("monitor_run_id", _id, sa.ForeignKey(f"{SCHEMA}.monitor_runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("column_name", sa.String(200), nullable=False),
    sa.Column("method", sa.String(64), nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("drifted", sa.Boolean, nullable=False),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", _id, primary_key=True, autoincrement=True),
    sa.Column("received_at", _when, nullable=False, server_default=sa.func.current_timestamp()),
    sa.Column("alertname", sa.String(200)),
    sa.Column("status", sa.String(32), nullable=False),  # firing / resolved
    sa.Column("fingerprint", sa.String(200)),
    sa.Column("group_key", sa.Text),
    sa.Column("starts_at", sa.String(64)),
    sa.Column("action", sa.String(64), nullable=False),  # retrain, ignored, duplicate, ...
    sa.Column("outcome", sa.Text),
    sa.Column("payload", sa.JSON),
    sa.Column("model_name", sa.String(200)),  # the alert's `model` label (migration 0002)
)


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg2 here (SQLAlchemy 2.1 would pick psycopg 3, not installed)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def engine(url: str) -> Engine:
    """An engine whose ``monitoring.`` tables resolve on both backends."""
    url = normalise_url(url)
    if is_sqlite(url):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        eng = sa.create_engine(url, connect_args={"timeout": 30})
        return eng.execution_options(schema_translate_map={SCHEMA: None})
    return sa.create_engine(url, pool_pre_ping=True)


_migrated: set[str] = set()  # the URLs this process has migrated (a failed migration is not in it)


def migrate(url: str) -> None:
    """Apply every pending migration (idempotent; safe to call from several processes)."""
    eng = engine(url)
    try:
        with eng.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
                conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        eng.dispose()
    _migrated.add(url)


@contextlib.contextmanager
def connection(url: str) -> Iterator[sa.Connection]:
    """A connection to read the monitoring database at ``url`` (migrated first, once per process)."""
    if url not in _migrated:
        migrate(url)
    eng = engine(url)
    try:
        with eng.connect() as conn:
            yield conn
    finally:
        eng.dispose()


@contextlib.contextmanager
def transaction(url: str) -> Iterator[sa.Connection]:
    """A connection in one transaction, committed when the block ends and rolled back if it raises."""
    with connection(url) as conn, conn.begin():
        yield conn
