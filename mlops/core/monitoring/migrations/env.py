"""Alembic environment: runs on the connection handed over by ``mlops.core.monitoring.store.migrate``."""

from alembic import context

from mlops.core.monitoring.store import SCHEMA

connection = context.config.attributes["connection"]
postgres = connection.dialect.name == "postgresql"
context.configure(
    connection=connection,
    version_table="alembic_version",
    version_table_schema=SCHEMA if postgres else None,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
