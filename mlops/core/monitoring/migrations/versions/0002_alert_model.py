"""alerts.model_name: the model an alert is about (its ``model`` label), so that models sharing one
monitoring database keep their alerts apart. Rows received before it stay NULL.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    return "monitoring" if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    op.add_column("alerts", sa.Column("model_name", sa.String(200)), schema=_schema())


def downgrade() -> None:
    op.drop_column("alerts", "model_name", schema=_schema())
