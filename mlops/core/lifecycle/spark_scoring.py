"""Batch scoring on Spark (``compute.engine: spark``): the table is read, checked and scored by Spark's executors.

The champion travels to the executors as the fitted pipeline (it pickles), and each Arrow batch of ``mapInPandas``
goes through ``batch_scoring.scored_batches``, the function the pandas engine uses: the predictor's scorer on the
model's schema probe, so Spark's probabilities are the predictor's. The schema check is one aggregation over the
whole table (bad numbers and missing values counted per column), before anything is written.

Executors import ``mlops``: with ``local[N]`` they are this interpreter's (``PYSPARK_PYTHON``); on a standalone
cluster, the workers need the same environment (``uv sync --extra spark``; no compose profile runs one yet).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import Column, SparkSession
from pyspark.sql import DataFrame as SparkFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops.core.config import Dataset, Settings
from mlops.core.data.validation import DataValidationError, Problem
from mlops.core.lifecycle import batch_scoring
from mlops.core.lifecycle.batch_scoring import DECISION, PROBABILITY, Champion


def session(settings: Settings) -> SparkSession:
    """The Spark session on ``compute.spark_master`` (created once per process, reused after)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # local[N]: executors run this interpreter
    builder = SparkSession.builder.master(settings.compute.spark_master).appName(f"mlops-{settings.project}")
    return (
        builder.config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(settings.compute.chunk_rows))
        .getOrCreate()
    )


def read_table(spark: SparkSession, source: Path, dataset: Dataset) -> SparkFrame:
    paths = [str(p) for p in batch_scoring.table_files(source)]
    if paths[0].endswith(".parquet"):
        return spark.read.parquet(*paths)
    # every cell as text, an empty one as null, as the pandas engine reads a CSV
    return spark.read.csv(paths, header=True, sep=dataset.source.separator, inferSchema=False)


def _count(condition: Column) -> Column:
    return F.sum(F.when(condition, 1).otherwise(0))


def check(frame: SparkFrame, dataset: Dataset, source: str) -> SparkFrame:
    """The table with numeric features as doubles and categories as text, or the error naming every problem
    (the same problems ``validation.feature_problems`` names for a pandas frame)."""
    absent = [Problem(col, "required column is missing") for col in dataset.features if col not in frame.columns]
    if absent:
        raise DataValidationError(source, absent)
    counts: list[Column] = [F.count(F.lit(1)).alias("__rows__")]
    for col in dataset.numerical:
        value, number = F.col(col), F.col(col).try_cast("double")
        not_finite = number.isNull() | F.isnan(number) | (F.abs(number) == float("inf"))
        counts.append(_count(value.isNotNull() & not_finite).alias(f"bad:{col}"))
        counts.append(_count(value.isNull()).alias(f"null:{col}"))
    found = frame.agg(*counts).first()
    assert found is not None  # an aggregation always has its one row
    problems = []
    for col in dataset.numerical:
        if bad := int(found[f"bad:{col}"] or 0):
            problems.append(Problem(col, "not a finite number", bad))
        elif col not in dataset.nullable_numerical and (nulls := int(found[f"null:{col}"] or 0)):
            problems.append(Problem(col, "missing values in a column that may not be empty", nulls))
    if problems:
        raise DataValidationError(source, problems)
    if not found["__rows__"]:
        raise DataValidationError(source, [Problem("(file)", "no rows to score")])
    typed = {col: F.col(col).cast("double") for col in dataset.numerical}
    typed |= {col: F.col(col).cast("string") for col in dataset.categorical}
    return frame.withColumns(typed)


def score(frame: SparkFrame, model: Champion, dataset: Dataset, chunk_rows: int) -> SparkFrame:
    """``frame`` (checked) with the champion's ``probability`` and ``decision`` on every row."""
    fields = [
        *frame.schema.fields,
        T.StructField(PROBABILITY, T.DoubleType()),
        T.StructField(DECISION, T.BooleanType()),
    ]
    return frame.mapInPandas(
        lambda frames: batch_scoring.scored_batches(frames, model, dataset, chunk_rows), T.StructType(fields)
    )


def score_table(settings: Settings, model: Champion, source: Path, output: Path) -> tuple[int, int]:
    """Score ``source`` into the Parquet folder ``output``; return (rows, positive decisions)."""
    spark = session(settings)
    dataset = settings.dataset
    frame = check(read_table(spark, source, dataset), dataset, str(source))
    score(frame, model, dataset, settings.compute.chunk_rows).write.mode("overwrite").parquet(str(output))
    written = spark.read.parquet(str(output)).agg(F.count(F.lit(1)), _count(F.col(DECISION))).first()
    assert written is not None
    return int(written[0]), int(written[1] or 0)
