"""Time splits by configuration: the reference up to a date and batches by date range or calendar period,
ranges on a number column, and clear errors for what cannot be split (#12, 5)."""

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops.core import config
from mlops.core.data import preparation


def dated_table(rows: int = 2 * 366, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    day = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(rows) % 366, unit="D")  # each day of 2024, twice
    return pd.DataFrame(
        {
            "signed_up": day.strftime("%Y-%m-%d"),
            "score": rng.normal(size=rows),
            "plan": rng.choice(["a", "b"], rows),
            "bought": rng.choice(["0", "1"], rows),
        }
    )


def settings_for(tmp_path: Path, split: dict[str, Any]) -> config.Settings:
    spec = {
        "project": "dated",
        "paths": {"work_dir": str(tmp_path / "work")},
        "dataset": {
            "name": "dated",
            "source": {"path": str(tmp_path / "dated.csv")},
            "target": "bought",
            "positive_label": "1",
            "labels": ["0", "1"],
            "numerical": ["score"],
            "categorical": ["plan"],
            "excluded": {"signed_up": {"reason": "when the row was recorded: splits the data, not a feature"}},
            "split": split,
        },
        "training": {"model_name": "dated"},
    }
    file = tmp_path / "dated.yaml"
    file.write_text(yaml.safe_dump(spec))  # dates written by a person arrive as YAML dates
    return config.load(file, environ={"MLOPS_ROOT": str(tmp_path)})


def test_reference_up_to_a_date_and_one_batch_per_month_after_it(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        {"strategy": "range", "column": "signed_up", "reference": {"end": "2024-10-01"}, "batch_period": "month"},
    )
    frame = dated_table()
    reference, batches = preparation.partition(frame, settings)
    assert list(batches) == ["2024-10", "2024-11", "2024-12"]
    assert pd.to_datetime(reference["signed_up"]).max() == pd.Timestamp("2024-09-30")
    assert len(batches["2024-10"]) == 2 * 31 and len(batches["2024-11"]) == 2 * 30
    assert len(reference) + sum(len(b) for b in batches.values()) == len(frame)
    preparation.persist(preparation.split(frame, settings), settings)
    holdout = settings.prepared_dir / "batches" / "2024-10.holdout.parquet"  # retrain writes such files beside
    batches["2024-10"].to_parquet(holdout)
    assert preparation.batch_names(settings) == ["2024-10", "2024-11", "2024-12"]  # what prepare wrote, no more
    assert len(preparation.load_batch(settings, "2024-12")) == 2 * 31


@pytest.mark.parametrize(
    ("period", "first"), [("quarter", "2024-Q4"), ("week", "week-2024-09-30"), ("year", "2024"), ("day", "2024-10-01")]
)
def test_every_calendar_period_names_its_batches(tmp_path: Path, period: str, first: str) -> None:
    split = {"strategy": "range", "column": "signed_up", "reference": {"end": "2024-10-01"}, "batch_period": period}
    _, batches = preparation.partition(dated_table(), settings_for(tmp_path, split))
    assert next(iter(batches)) == first


def test_explicit_date_ranges_from_yaml_dates_and_zoned_timestamps(tmp_path: Path) -> None:
    split = (
        "strategy: range\ncolumn: signed_up\nreference: {end: 2024-07-01}\n"
        "batches:\n  q3: {start: 2024-07-01, end: 2024-10-01}\n  q4: {start: 2024-10-01}\n"
    )
    settings = settings_for(tmp_path, yaml.safe_load(split))
    assert isinstance(settings.dataset.split.batches["q3"], config.Range)
    frame = dated_table()
    frame["signed_up"] = frame["signed_up"] + "T12:00:00+02:00"  # an ISO timestamp with its zone
    reference, batches = preparation.partition(frame, settings)
    assert len(batches["q3"]) == 2 * 92 and len(batches["q4"]) == 2 * 92
    assert len(reference) == len(frame) - 4 * 92


def test_ranges_on_a_number_column(tmp_path: Path) -> None:
    split = {
        "strategy": "range",
        "column": "score",
        "reference": {"end": 0.5},
        "batches": {"high": {"start": 0.5, "end": 1.5}, "highest": {"start": 1.5}},
    }
    frame = dated_table()
    reference, batches = preparation.partition(frame, settings_for(tmp_path, split))
    assert reference["score"].max() < 0.5 <= batches["high"]["score"].min()
    assert batches["highest"]["score"].min() >= 1.5
    assert len(reference) + len(batches["high"]) + len(batches["highest"]) == len(frame)


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"strategy": "range", "column": "signed_up", "reference": ["2024"]}, "a `reference` range"),
        ({"strategy": "range", "column": "signed_up", "reference": {}}, "start`, `end` or both"),
        (
            {"strategy": "range", "column": "signed_up", "reference": {"start": "2024-01-01"}, "batch_period": "month"},
            "batch_period needs the reference's `end`",
        ),
        ({"strategy": "random", "batch_period": "month"}, "batch_period needs strategy 'range'"),
        ({"strategy": "range", "column": "joined", "reference": {"end": 3}}, "split column 'joined'"),
    ],
)
def test_a_split_that_cannot_work_is_refused_with_the_reason(
    tmp_path: Path, split: dict[str, Any], message: str
) -> None:
    with pytest.raises(config.ConfigError, match=message):
        settings_for(tmp_path, split)


def test_a_column_of_neither_dates_nor_numbers_is_named(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, {"strategy": "range", "column": "plan", "reference": {"end": "2024-10-01"}})
    with pytest.raises(ValueError, match="split column 'plan': no value reads as a date or a number"):
        preparation.partition(dated_table(), settings)
