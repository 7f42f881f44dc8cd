"""Fixtures of the reliability suite: a throwaway PostgreSQL we may stop, a small model's payload, predictors.

The predictor fixtures are the serving suite's (``tests/serving/conftest.py``: ``start_predictor`` starts
gunicorn on a payload exactly as deploy does; ``write_local_payload`` writes deploy's payload layout for a
model fitted here in seconds). The monitoring database the fault drills stop is a PostgreSQL of this
suite alone (:class:`drills.ThrowawayPostgres`), never the shared test server.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlops.core import config
from mlops.testing.drills import ThrowawayPostgres
from mlops.testing.payloads import write_local_payload
from tests.serving.conftest import (  # noqa: F401 (fixtures shared with the serving suite)
    Predictor,
    bank_frame,
    fit_small,
    start_predictor,
)


@pytest.fixture(scope="session")
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    # Not under pytest's tmp folder: that one is private to root (0700) and the server runs as `postgres`.
    run = Path(tempfile.mkdtemp(prefix="mlops-reliability-pg-"))
    run.chmod(0o755)
    server = ThrowawayPostgres(run)
    try:
        yield server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    finally:
        server.stop()
        shutil.rmtree(run, ignore_errors=True)


def fit_payload(frame: pd.DataFrame, settings: config.Settings, fit: Callable[..., Any], folder: Path) -> Path:
    """Deploy's payload layout for an XGBoost pipeline fitted on 8,000 rows of ``frame`` (seconds)."""
    sample = frame.sample(8000, random_state=7).reset_index(drop=True)
    return write_local_payload(folder, fit("xgboost", sample, settings), "1", sample, settings, "xgboost")


@pytest.fixture(scope="session")
def small_payload(
    bank_frame: pd.DataFrame,  # noqa: F811
    fit_small: Callable[..., Any],  # noqa: F811
    settings: config.Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    return fit_payload(bank_frame, settings, fit_small, tmp_path_factory.mktemp("payload"))


def records_of(frame: pd.DataFrame, settings: config.Settings, rows: int = 500) -> list[dict[str, Any]]:
    """Valid request records: the model's features of real rows, as JSON values."""
    sample = frame[settings.dataset.features].sample(rows, random_state=11)
    return [
        {k: None if pd.isna(v) else v.item() if hasattr(v, "item") else v for k, v in r.items()}
        for r in sample.to_dict("records")
    ]


@pytest.fixture(scope="session")
def sample_records(bank_frame: pd.DataFrame, settings: config.Settings) -> list[dict[str, Any]]:  # noqa: F811
    return records_of(bank_frame, settings)
