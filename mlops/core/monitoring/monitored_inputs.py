"""What the monitor pipeline reads: a prepared batch, or a window of the prediction log (the live traffic), each
checked against the dataset's schema before anything is computed or written.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from mlops.core.config import Settings
from mlops.core.data import features, preparation, validation
from mlops.core.monitoring import store


class MonitorInputError(ValueError):
    """The batch cannot be monitored (unreadable, schema broken, empty); nothing was written."""


def check_frame(frame: pd.DataFrame, settings: Settings, source: str) -> pd.DataFrame:
    """The model's input columns of ``frame`` (normalised), or a clear error naming the broken columns."""
    dataset = settings.dataset
    if frame.empty:
        raise MonitorInputError(f"{source}: the batch has no rows")
    missing = [c for c in dataset.features if c not in frame.columns]
    if missing:
        raise MonitorInputError(f"{source}: missing feature column(s) {missing}")
    problems = [str(p) for p in validation.feature_problems(frame, dataset)]
    target = dataset.target
    if target in frame.columns:
        labels = frame[target]
        bad = int((~labels.astype(str).isin(dataset.labels) | labels.isna()).sum())
        if bad:
            problems.append(f"{target}: label not in {dataset.labels} ({bad} bad row{'s' if bad != 1 else ''})")
    if problems:
        raise MonitorInputError(f"{source} breaks the dataset's schema:\n" + "\n".join(f"  - {p}" for p in problems))
    return features.normalise(frame, dataset)


def read_batch(settings: Settings, name: str) -> pd.DataFrame:
    """A prepared monitoring batch; an unreadable file is an input error, not a crash."""
    try:
        return preparation.load_batch(settings, name, compact=True)  # a large batch's text, compactly
    except FileNotFoundError as exc:
        raise MonitorInputError(str(exc)) from exc
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise MonitorInputError(f"batch {name!r} cannot be read ({exc.__class__.__name__}: {exc})") from exc


def logged_predictions(settings: Settings, start: datetime, end: datetime) -> pd.DataFrame:
    """The logged inputs of the predictions scored in ``[start, end)`` (the live traffic)."""
    if start >= end:
        raise MonitorInputError(f"window: start {start.isoformat()} is not before end {end.isoformat()}")
    table = store.predictions
    query = (
        sa.select(table.c.inputs)
        .where(table.c.model_name == settings.training.model_name)
        .where(table.c.scored_at >= start, table.c.scored_at < end)
        .order_by(table.c.id)
    )
    with store.connection(settings.monitoring_db) as conn:
        records = [row.inputs for row in conn.execute(query)]
    if not records:
        raise MonitorInputError(f"window: no predictions logged between {start.isoformat()} and {end.isoformat()}")
    return pd.DataFrame.from_records(records)


def parse_window(start: str | datetime, end: str | datetime) -> tuple[datetime, datetime]:
    """A window from ISO-8601 strings (naive means UTC)."""
    bounds = []
    for label, value in (("window_start", start), ("window_end", end)):
        try:
            moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise MonitorInputError(f"{label}: not an ISO-8601 time: {value!r}") from exc
        bounds.append(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    return bounds[0], bounds[1]
