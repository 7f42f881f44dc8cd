"""The monitoring schema: model events, prediction log, evaluations, monitor runs, column drift, alerts.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)
NOW = sa.func.current_timestamp()


def _schema() -> str | None:
    return "monitoring" if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    schema = _schema()
    op.create_table(
        "model_events",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("occurred_at", WHEN, nullable=False, server_default=NOW),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("version", sa.String(32)),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("alias", sa.String(64)),
        sa.Column("previous_version", sa.String(32)),
        sa.Column("metric", sa.String(64)),
        sa.Column("candidate_value", sa.Float),
        sa.Column("champion_value", sa.Float),
        sa.Column("reason", sa.Text),
        sa.Column("details", sa.JSON),
        schema=schema,
    )
    op.create_table(
        "predictions",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("record_index", sa.Integer, nullable=False, server_default="0"),
        sa.Column("scored_at", WHEN, nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("decision", sa.Boolean, nullable=False),
        sa.UniqueConstraint("request_id", "record_index", name="uq_predictions_request_record"),
        schema=schema,
    )
    op.create_index("ix_predictions_scored_at", "predictions", ["scored_at"], schema=schema)
    op.create_table(
        "evaluations",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("evaluated_at", WHEN, nullable=False, server_default=NOW),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("roc_auc", sa.Float),
        sa.Column("pr_auc", sa.Float),
        sa.Column("f1", sa.Float),
        sa.Column("lift", sa.Float),
        sa.Column("threshold", sa.Float),
        schema=schema,
    )
    op.create_table(
        "monitor_runs",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("computed_at", WHEN, nullable=False, server_default=NOW),
        sa.Column("batch", sa.String(200), nullable=False),
        sa.Column("window_start", WHEN),
        sa.Column("window_end", WHEN),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
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
        schema=schema,
    )
    op.create_index("ix_monitor_runs_computed_at", "monitor_runs", ["computed_at"], schema=schema)
    fk_target = f"{schema}.monitor_runs.id" if schema else "monitor_runs.id"
    op.create_table(
        "column_drift",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("monitor_run_id", ID, sa.ForeignKey(fk_target, ondelete="CASCADE"), nullable=False),
        sa.Column("column_name", sa.String(200), nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("drifted", sa.Boolean, nullable=False),
        schema=schema,
    )
    op.create_table(
        "alerts",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("received_at", WHEN, nullable=False, server_default=NOW),
        sa.Column("alertname", sa.String(200)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("fingerprint", sa.String(200)),
        sa.Column("group_key", sa.Text),
        sa.Column("starts_at", sa.String(64)),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("outcome", sa.Text),
        sa.Column("payload", sa.JSON),
        schema=schema,
    )


def downgrade() -> None:
    schema = _schema()
    for table in ("alerts", "column_drift", "monitor_runs", "evaluations", "predictions", "model_events"):
        op.drop_table(table, schema=schema)
