"""Tables on Spark (``compute.engine: spark``): the session, reading a table, and the checks and statistics that
take one aggregation over every row, so that no stage needs the whole table in one process.

The checks name the same problems as their pandas twins in ``validation`` (column, reason, bad rows), and
:func:`feature_schema` computes what ``schema.from_training`` computes, exactly (medians included).

Executors import ``mlops``: with ``local[N]`` they are this interpreter's (``PYSPARK_PYTHON``); on a standalone
cluster the workers need the same environment (the compose stack's ``spark`` profile runs them from Mage's image).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import Column, SparkSession
from pyspark.sql import DataFrame as SparkFrame
from pyspark.sql import functions as F

from mlops.core.config import Dataset, Settings
from mlops.core.data import schema
from mlops.core.data.validation import DataValidationError, Problem, table_files


def session(settings: Settings) -> SparkSession:
    """The Spark session on ``compute.spark_master`` (created once per process, reused after)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # local[N]: executors run this interpreter
    builder = SparkSession.builder.master(settings.compute.spark_master).appName(f"mlops-{settings.project}")
    return (
        builder.config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")  # carriage-return bars in piped logs
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(settings.compute.chunk_rows))
        .getOrCreate()
    )


def read_table(spark: SparkSession, source: Path, separator: str = ",") -> SparkFrame:
    """A Parquet or CSV file or folder; a CSV's every cell as text and an empty one as null (as pandas reads it)."""
    paths = [str(p) for p in table_files(source)]
    if paths[0].endswith(".parquet"):
        return spark.read.parquet(*paths)
    return spark.read.csv(paths, header=True, sep=separator, inferSchema=False)


def count(condition: Column) -> Column:
    """How many rows meet ``condition`` (an aggregate)."""
    return F.sum(F.when(condition, 1).otherwise(0))


def _number(col: str) -> Column:
    return F.col(col).try_cast("double")


def _number_counts(dataset: Dataset, columns: Sequence[str]) -> list[Column]:
    counts = []
    for col in dataset.numerical:
        if col not in columns:
            continue
        number = _number(col)
        not_finite = number.isNull() | F.isnan(number) | (F.abs(number) == float("inf"))
        counts.append(count(F.col(col).isNotNull() & not_finite).alias(f"bad:{col}"))
        counts.append(count(F.col(col).isNull()).alias(f"null:{col}"))
    return counts


def _number_problems(dataset: Dataset, found: dict[str, int | None], columns: Sequence[str]) -> list[Problem]:
    problems = []
    for col in dataset.numerical:
        if col not in columns:
            continue
        if bad := int(found[f"bad:{col}"] or 0):
            problems.append(Problem(col, "not a finite number", bad))
        elif col not in dataset.nullable_numerical and (nulls := int(found[f"null:{col}"] or 0)):
            problems.append(Problem(col, "missing values in a column that may not be empty", nulls))
    return problems


def typed(frame: SparkFrame, dataset: Dataset) -> SparkFrame:
    """Numeric features as doubles, categories as text (after a check: every number parses)."""
    columns = {col: F.col(col).cast("double") for col in dataset.numerical if col in frame.columns}
    columns |= {col: F.col(col).cast("string") for col in dataset.categorical if col in frame.columns}
    return frame.withColumns(columns)


def check_features(frame: SparkFrame, dataset: Dataset, source: str, labels: bool = False) -> SparkFrame:
    """``frame`` typed, or the error naming every problem ``validation.feature_problems`` would name (and, with
    ``labels`` and a target column, a missing label or one not in the dataset's)."""
    absent = [Problem(col, "required column is missing") for col in dataset.features if col not in frame.columns]
    if absent:
        raise DataValidationError(source, absent)
    aggregates = [F.count(F.lit(1)).alias("__rows__"), *_number_counts(dataset, frame.columns)]
    labeled = labels and dataset.target in frame.columns
    if labeled:
        target = F.col(dataset.target).cast("string")
        aggregates.append(count(target.isNull() | ~target.isin(list(dataset.labels))).alias("__bad_label__"))
    row = frame.agg(*aggregates).first()
    assert row is not None  # an aggregation always has its one row
    found = row.asDict()
    problems = _number_problems(dataset, found, frame.columns)
    if labeled and found["__bad_label__"]:
        problems.append(Problem(dataset.target, f"label not in {dataset.labels}", int(found["__bad_label__"])))
    if problems:
        raise DataValidationError(source, problems)
    if not found["__rows__"]:
        raise DataValidationError(source, [Problem("(file)", "no rows")])
    return typed(frame, dataset)


def check_raw(frame: SparkFrame, dataset: Dataset, source: str) -> SparkFrame:
    """The raw table typed, or the error naming every problem ``validation.validate_raw`` would name: a missing
    or unexpected column, a number that does not parse, a missing number or label, a label not in the dataset's."""
    expected = [*dataset.features, *dataset.excluded, dataset.target]
    problems = [Problem(col, "required column is missing") for col in expected if col not in frame.columns]
    problems += [
        Problem(col, "unexpected column (not in the dataset configuration)")
        for col in frame.columns
        if col not in expected
    ]
    if problems:
        raise DataValidationError(source, problems)
    target = F.col(dataset.target)
    aggregates = [
        F.count(F.lit(1)).alias("__rows__"),
        count(target.isNull()).alias("__no_label__"),
        count(target.isNotNull() & ~target.cast("string").isin(list(dataset.labels))).alias("__bad_label__"),
        *_number_counts(dataset, frame.columns),
    ]
    row = frame.agg(*aggregates).first()
    assert row is not None
    found = row.asDict()
    problems = _number_problems(dataset, found, frame.columns)
    if found["__no_label__"]:
        problems.append(Problem(dataset.target, "missing values", int(found["__no_label__"])))
    if found["__bad_label__"]:
        problems.append(Problem(dataset.target, f"label not in {dataset.labels}", int(found["__bad_label__"])))
    if problems:
        raise DataValidationError(source, problems)
    if not found["__rows__"]:
        raise DataValidationError(source, [Problem("(file)", "a header but no data rows")])
    return typed(frame, dataset)


def feature_schema(frame: SparkFrame, dataset: Dataset) -> schema.FeatureSchema:
    """``schema.from_training`` on Spark: observed bounds, exact medians and categories, in one aggregation."""
    aggregates: list[Column] = []
    for col in dataset.numerical:
        value = F.col(col).cast("double")
        aggregates += [
            F.min(value).alias(f"min:{col}"),
            F.max(value).alias(f"max:{col}"),
            F.median(value).alias(f"median:{col}"),
            count(value.isNotNull() & (value != F.round(value))).alias(f"fraction:{col}"),
        ]
    for col in dataset.categorical:
        aggregates += [
            F.collect_set(F.col(col).cast("string")).alias(f"set:{col}"),
            count(F.col(col).isNull()).alias(f"null:{col}"),
        ]
    row = frame.agg(*aggregates).first()
    assert row is not None
    numerical = {
        col: schema.NumericalFeature(
            minimum=float(row[f"min:{col}"]),
            maximum=float(row[f"max:{col}"]),
            median=float(row[f"median:{col}"]),
            nullable=col in dataset.nullable_numerical,
            integer=not row[f"fraction:{col}"],
        )
        for col in dataset.numerical
    }
    categorical = {
        col: schema.CategoricalFeature(categories=sorted(row[f"set:{col}"]), nullable=bool(row[f"null:{col}"]))
        for col in dataset.categorical
    }
    return schema.FeatureSchema(numerical, categorical)
