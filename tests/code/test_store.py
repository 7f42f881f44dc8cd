"""The one way to the monitoring database: store.connection to read, store.transaction to write."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from mlops.core.monitoring import store


def count(url: str) -> int:
    with store.connection(url) as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(store.alerts)).scalar_one())


def test_the_first_connection_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'monitoring.db'}"
    assert count(url) == 0  # no error: the tables exist, and the folder was made
    with store.connection(url) as conn:
        assert set(sa.inspect(conn).get_table_names()) >= {t.name for t in store.metadata.sorted_tables}


def test_a_transaction_commits_at_the_end_and_rolls_back_on_an_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'monitoring.db'}"
    row = {"status": "firing", "action": "ignored"}
    with store.transaction(url) as conn:
        conn.execute(store.alerts.insert().values(**row))
    assert count(url) == 1
    with pytest.raises(RuntimeError, match="half-way"), store.transaction(url) as conn:
        conn.execute(store.alerts.insert().values(**row))
        raise RuntimeError("half-way")
    assert count(url) == 1
