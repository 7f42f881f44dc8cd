"""The data stage on Spark (local[2]) against the pandas engine, on the bank table and on every table of the
dataset matrix (numbers only, mostly categories, a date split by calendar month, heavy missing values, wide).

Assignment by a column's values or by ranges is deterministic: Spark's reference and batches are the pandas
engine's rows. Random choices (random batches, the train/validation/test split) are a seeded hash of each row, so
their shares are checked against the configuration within binomial noise. A broken table is refused with the
problems pandera names.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from mlops.core import config
from mlops.core.data import preparation, prepare_pipeline, spark_preparation
from mlops.core.data.validation import DataValidationError, validate_raw
from mlops.testing import loop, tables

pytestmark = [pytest.mark.slow, pytest.mark.spark]


def spark_settings(table: tables.Table, folder: Path) -> config.Settings:
    config_file = loop.write_config(table, folder, tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    settings = config.load(config_file, environ=loop.clean_environment(config_file, folder))
    compute = settings.compute.model_copy(update={"engine": "spark", "spark_master": "local[2]"})
    return settings.model_copy(update={"compute": compute})


def _key(frame: pd.DataFrame, columns: list[str]) -> list[tuple[str, ...]]:
    return sorted(tuple(str(v) for v in row) for row in frame[columns].itertuples(index=False))


def _within_noise(observed: int, total: int, share: float) -> bool:
    return abs(observed - share * total) <= 4 * math.sqrt(total * share * (1 - share)) + 1


@pytest.mark.parametrize("table", tables.TABLES, ids=lambda t: t.name)
def test_spark_prepares_the_parts_the_pandas_engine_does(table: tables.Table, tmp_path: Path) -> None:
    settings = spark_settings(table, tmp_path)
    report = spark_preparation.persist(settings)
    raw = preparation.load_raw(settings, allow_download=False)
    reference, batches = preparation.partition(raw, settings)
    spec = settings.dataset.split
    columns = [*settings.dataset.features, settings.dataset.target]
    written = {name: preparation.load_split(settings, name) for name in preparation.SPLITS}
    spark_reference = pd.concat(written.values(), ignore_index=True)
    assert list(report["parts"]) == [*preparation.SPLITS, *(f"batch:{name}" for name in batches)]
    assert preparation.batch_names(settings) == list(batches)
    if spec.strategy == "random":
        for name, share in spec.batches.items():
            assert _within_noise(len(preparation.load_batch(settings, name)), len(raw), float(share)), name
        assert sum(report["parts"][p]["rows"] for p in report["parts"]) == len(raw)
    else:  # the same rows, batch by batch
        assert _key(spark_reference, columns) == _key(reference, columns)
        for name, rows in batches.items():
            assert _key(preparation.load_batch(settings, name), columns) == _key(rows, columns), name
    for name, share in (("validation", spec.validation_size), ("test", spec.test_size)):
        assert _within_noise(len(written[name]), len(spark_reference), share), name
        assert report["parts"][name]["rows"] == len(written[name])
    # every split holds both classes at about the reference's rate (shares within each class)
    rate = preparation.labels(spark_reference, settings).mean()
    for name, frame in written.items():
        assert abs(preparation.labels(frame, settings).mean() - rate) < 0.1, name
    assert json.loads((settings.prepared_dir / preparation.BATCH_LIST).read_text()) == list(batches)
    # the pandas engine writes over Spark's folders
    preparation.persist(preparation.split(raw, settings), settings)
    assert (settings.prepared_dir / "train.parquet").is_file()


def test_the_leakage_sample_is_reference_rows_and_a_broken_table_is_refused_as_pandera_refuses_it(
    tmp_path: Path,
) -> None:
    table = tables.by_name("fair")
    settings = spark_settings(table, tmp_path)
    sample = prepare_pipeline.load_for_checks(settings)  # under the sample size: every reference row
    report = spark_preparation.persist(settings)
    assert len(sample) == sum(report["parts"][name]["rows"] for name in preparation.SPLITS)
    assert set(sample.columns) == set(table.build().columns)
    raw = table.build().astype(str)
    bad_values = raw.copy()
    bad_values.loc[[3, 70, 200], "age"] = "forty"
    bad_values.loc[[5, 6], "had_affair"] = "maybe"
    bad_columns = raw.drop(columns=["educ"]).assign(notes="x")
    path = Path(settings.dataset.source.path or "")
    for broken in (bad_values, bad_columns):
        broken.to_csv(path, index=False)
        with pytest.raises(DataValidationError) as on_spark:
            spark_preparation.raw_table(settings)
        with pytest.raises(DataValidationError) as on_pandas:
            validate_raw(pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""]), settings.dataset)
        assert {str(p) for p in on_spark.value.problems} == {str(p) for p in on_pandas.value.problems}
