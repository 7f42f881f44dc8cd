"""The data stage on Spark (``compute.engine: spark``): validate, partition and split a raw table no process holds,
and write the prepared layout ``preparation`` documents (each split and batch a Parquet folder, the reports).

- Validation is one aggregation over every row (``spark_tables.check_raw``): the problems pandera names.
- The leakage check scores each column on a seeded sample of the reference of at most
  ``monitoring.drift_sample_rows`` rows (single-feature ROC-AUC needs no more).
- Rows are assigned to the reference and the batches by the split column's values (``column``), by ranges of a number
  or a date (``range``), or by shares (``random``); the reference is split into train, validation and test by
  shares within each class. Random choices come from a seeded hash of each row's values, so the same table
  gives the same parts whatever its partitioning; the shares are met in expectation (binomially), and the rows
  differ from the pandas engine's, which draws them with NumPy.
- Everything is written in one pass (one folder per part), then moved into place.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import DataFrame as SparkFrame
from pyspark.sql import functions as F

from mlops.core.config import Range, Settings
from mlops.core.data import preparation, spark_tables

PART, PART_NUMBER = "__part__", "__part_number__"
UNIT = 1_000_000  # a row's random share: its hash modulo this, over this


def raw_table(settings: Settings) -> SparkFrame:
    """The raw file (found as the pandas engine finds it, downloaded if configured), validated on Spark."""
    source = preparation.resolve_source(settings)
    spark = spark_tables.session(settings)
    frame = spark_tables.read_table(spark, source, settings.dataset.source.separator)
    return spark_tables.check_raw(frame, settings.dataset, str(source))


def share(frame: SparkFrame, salt: int) -> Column:
    """Each row's seeded random number in [0, 1): a hash of its values, the same on any partitioning."""
    return F.pmod(F.xxhash64(*[F.col(c) for c in frame.columns], F.lit(salt)), F.lit(UNIT)) / UNIT


def _in_range(values: Column, bounds: Range, dates: bool) -> Column:
    def bound(value: Any) -> Column:
        return F.lit(pd.Timestamp(value).to_pydatetime()) if dates else F.lit(float(value))

    inside = values.isNotNull()
    if bounds.start is not None:
        inside &= values >= bound(bounds.start)
    if bounds.end is not None:
        inside &= values < bound(bounds.end)
    return inside


PERIOD_FORMATS = {"day": "yyyy-MM-dd", "month": "yyyy-MM", "year": "yyyy"}


def period_names(values: Column, period: str) -> Column:
    """As ``preparation.period_names``: 2024-07-01, week-2024-07-01 (its Monday), 2024-07, 2024-Q3, 2024."""
    if period == "quarter":
        return F.concat(F.year(values).cast("string"), F.lit("-Q"), F.quarter(values).cast("string"))
    if period == "week":
        return F.concat(F.lit("week-"), F.date_format(F.date_trunc("week", values), "yyyy-MM-dd"))
    return F.date_format(values, PERIOD_FORMATS[period])


def partition(frame: SparkFrame, settings: Settings) -> tuple[Column, list[str]]:
    """Each row's part: "reference", a batch name, or null (in neither), and the batch names in order."""
    spec = settings.dataset.split
    names = list(spec.batches)
    if spec.strategy == "column":
        assert spec.column is not None
        values = F.col(spec.column).cast("string")
        part = F.when(values.isin([str(v) for v in spec.reference]), "reference")
        for name, batch_values in spec.batches.items():
            part = part.when(values.isin([str(v) for v in batch_values]), name)  # type: ignore[union-attr]
    elif spec.strategy == "range":
        assert spec.column is not None and isinstance(spec.reference, Range)
        kind = dict(frame.dtypes)[spec.column]
        numeric = spec.column in settings.dataset.numerical or kind not in ("string", "timestamp", "date")
        if numeric:
            values = F.col(spec.column).cast("double")
        elif kind == "string":
            values = F.try_to_timestamp(F.col(spec.column))
        else:
            values = F.col(spec.column).cast("timestamp")
        part = F.when(_in_range(values, spec.reference, not numeric), "reference")
        for name, bounds in spec.batches.items():
            part = part.when(_in_range(values, bounds, not numeric), name)  # type: ignore[arg-type]
        if spec.batch_period is not None:
            if numeric:
                raise ValueError("batch_period needs a date column; the split column holds numbers")
            assert spec.reference.end is not None
            later = values >= F.lit(pd.Timestamp(spec.reference.end).to_pydatetime())
            part = part.when(later, period_names(values, spec.batch_period))
            found = frame.select(period_names(values, spec.batch_period).alias("p")).where(later).distinct()
            names += sorted(str(row.p) for row in found.collect() if row.p not in names)
    else:
        start, u, chosen = 0.0, share(frame, spec.seed), None
        for name, fraction in spec.batches.items():
            end = start + float(fraction)  # type: ignore[arg-type]
            inside = (u >= start) & (u < end)
            chosen = F.when(inside, name) if chosen is None else chosen.when(inside, name)
            start = end
        part = F.lit("reference") if chosen is None else chosen.otherwise("reference")
    return part, names


def parts(frame: SparkFrame, settings: Settings) -> tuple[SparkFrame, list[str]]:
    """``frame`` with each row's part (train, validation, test or ``batch:<name>``); rows in no part dropped."""
    spec = settings.dataset.split
    part, names = partition(frame, settings)
    u = share(frame, spec.seed + 1)
    train_end = 1 - spec.validation_size - spec.test_size
    split = F.when(u < train_end, "train").when(u < 1 - spec.test_size, "validation").otherwise("test")
    labelled = frame.withColumn(PART, F.when(part == "reference", split).otherwise(F.concat(F.lit("batch:"), part)))
    return labelled.where(F.col(PART).isNotNull()), names


def leakage_sample(settings: Settings) -> pd.DataFrame:
    """A seeded sample of the validated raw table's reference rows, for the leakage check (pandas)."""
    frame = raw_table(settings)
    part, _ = partition(frame, settings)
    reference = frame.where(part == "reference")
    total = reference.count()
    if not total:
        raise ValueError(f"the reference is empty: no rows have {settings.dataset.split.column} in its reference")
    limit = settings.monitoring.drift_sample_rows or total
    fraction = min(1.0, limit / total)
    sample = reference.sample(fraction=fraction, seed=settings.dataset.split.seed) if fraction < 1 else reference
    return sample.toPandas()


def _report(labelled: SparkFrame, settings: Settings) -> dict[str, dict[str, Any]]:
    """``preparation.column_report`` of every part, in one aggregation."""
    dataset = settings.dataset
    columns = [c for c in labelled.columns if c != PART]
    positive = (F.col(dataset.target).cast("string") == dataset.positive_label).cast("double")
    aggregates = [F.count(F.lit(1)).alias("rows"), F.avg(positive).alias("positive_rate")]
    aggregates += [F.avg(F.col(c).isNull().cast("double")).alias(f"missing:{c}") for c in columns]
    found = {row[PART]: row for row in labelled.groupBy(PART).agg(*aggregates).collect()}
    return {
        name: {
            "rows": int(row["rows"]),
            "positive_rate": round(float(row["positive_rate"]), 6),
            "missing_share": {c: round(float(row[f"missing:{c}"]), 6) for c in columns},
        }
        for name, row in found.items()
    }


def persist(settings: Settings) -> dict[str, Any]:
    """Validate, partition, split and write the prepared layout; return the data report."""
    frame = raw_table(settings)
    labelled, names = parts(frame, settings)
    out = settings.prepared_dir
    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    # folders named by number: Spark escapes characters such as ':' in a partition folder's name
    order = [*preparation.SPLITS, *(f"batch:{name}" for name in names)]
    number = F.create_map(*[F.lit(v) for i, part in enumerate(order) for v in (part, i)])[F.col(PART)]
    labelled.withColumn(PART_NUMBER, number).drop(PART).write.partitionBy(PART_NUMBER).parquet(str(staging))
    folders = {order[int(p.name.split("=", 1)[1])]: p for p in staging.glob(f"{PART_NUMBER}=*")}
    written = set(folders)
    if not {"train", "validation", "test"} <= written:
        raise ValueError(f"the reference is empty: no rows have {settings.dataset.split.column} in its reference")
    report_parts = _report(labelled, settings)
    preparation.batches_dir(settings).mkdir(parents=True, exist_ok=True)
    targets = {name: out / f"{name}.parquet" for name in preparation.SPLITS}
    targets |= {f"batch:{name}": preparation.batch_path(settings, name) for name in names}
    for stale in preparation.stored_batches(settings):
        if f"batch:{stale}" not in written:
            preparation.remove_part(preparation.batch_path(settings, stale))
    for part, target in targets.items():
        preparation.remove_part(target)
        if part in folders:
            folders[part].rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    kept = [name for name in names if f"batch:{name}" in written]
    (out / preparation.BATCH_LIST).write_text(json.dumps(kept))
    return {
        "dataset": settings.dataset.name,
        "target": settings.dataset.target,
        "positive_label": settings.dataset.positive_label,
        "parts": {name: report_parts[name] for name in [*preparation.SPLITS, *(f"batch:{n}" for n in kept)]},
    }
