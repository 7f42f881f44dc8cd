"""monitor_runs.sample_rows: how many of the batch's rows Evidently compared (``monitoring.drift_sample_rows``);
row counts, missing shares and quality stay over the whole batch. Runs written before it stay NULL.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    return "monitoring" if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    op.add_column("monitor_runs", sa.Column("sample_rows", sa.Integer), schema=_schema())


def downgrade() -> None:
    op.drop_column("monitor_runs", "sample_rows", schema=_schema())
