"""Batch scoring on Spark (``compute.engine: spark``): the table is read, checked and scored by Spark's executors.

The champion travels to the executors as the fitted pipeline (it pickles), and each Arrow batch of ``mapInPandas``
goes through ``champion_scoring.scored_batches``, the function the pandas engine uses: the predictor's scorer on the
model's schema probe, so Spark's probabilities are the predictor's. The schema check is one aggregation over the
whole table (bad numbers and missing values counted per column), before anything is written.

Executors import ``mlops`` (``spark_tables``).
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame as SparkFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops.core.config import Dataset, Settings
from mlops.core.data import spark_tables
from mlops.core.lifecycle import champion_scoring
from mlops.core.lifecycle.champion_scoring import DECISION, PROBABILITY, Champion


def score(frame: SparkFrame, model: Champion, dataset: Dataset, chunk_rows: int) -> SparkFrame:
    """``frame`` (checked) with the champion's ``probability`` and ``decision`` on every row."""
    fields = [
        *frame.schema.fields,
        T.StructField(PROBABILITY, T.DoubleType()),
        T.StructField(DECISION, T.BooleanType()),
    ]
    return frame.mapInPandas(
        lambda frames: champion_scoring.scored_batches(frames, model, dataset, chunk_rows), T.StructType(fields)
    )


def score_table(settings: Settings, model: Champion, source: Path, output: Path) -> tuple[int, int]:
    """Score ``source`` into the Parquet folder ``output``; return (rows, positive decisions)."""
    spark = spark_tables.session(settings)
    dataset = settings.dataset
    table = spark_tables.read_table(spark, source, dataset.source.separator)
    frame = spark_tables.check_features(table, dataset, str(source))
    score(frame, model, dataset, settings.compute.chunk_rows).write.mode("overwrite").parquet(str(output))
    written = spark.read.parquet(str(output)).agg(F.count(F.lit(1)), spark_tables.count(F.col(DECISION))).first()
    assert written is not None
    return int(written[0]), int(written[1] or 0)
