"""A prepared batch monitored on Spark (``compute.engine: spark``): what the monitor measures over every row is
measured by Spark's executors; Evidently compares a sample Spark draws.

- The batch is checked in one aggregation (the problems ``monitored_inputs.check_frame`` names), then the champion
  scores every row on the executors (``mapInPandas``, the pipeline the pandas engine scores with).
- Row count and missing cells are counted by Spark, exactly. ROC-AUC, PR-AUC and F1 are computed here from every
  row's label and probability (two numbers a row: the one part of the batch this process holds in full).
- Evidently's drift takes a seeded sample of at most ``monitoring.drift_sample_rows`` rows of the batch, and of the
  reference (the validation and test splits, which Spark reads too).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame as SparkFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from sklearn.pipeline import Pipeline

from mlops.core.config import Settings
from mlops.core.data import features, preparation, spark_tables
from mlops.core.data.validation import DataValidationError
from mlops.core.monitoring import drift_reference
from mlops.core.monitoring.batch_measures import BatchMeasures, quality
from mlops.core.monitoring.drift_reference import PREDICTION
from mlops.core.monitoring.monitored_inputs import MonitorInputError


def scored_batches(frames: Iterator[pd.DataFrame], pipeline: Pipeline, settings: Settings) -> Iterator[pd.DataFrame]:
    """``mapInPandas``'s body: each Arrow batch's model inputs with the champion's probability."""
    for frame in frames:
        inputs = features.normalise(frame, settings.dataset)
        yield frame.assign(**{PREDICTION: drift_reference.probabilities(pipeline, inputs)})


def scored(frame: SparkFrame, pipeline: Pipeline, settings: Settings) -> SparkFrame:
    schema = T.StructType([*frame.schema.fields, T.StructField(PREDICTION, T.DoubleType())])
    return frame.mapInPandas(lambda frames: scored_batches(frames, pipeline, settings), schema)


def sample(frame: SparkFrame, total: int, settings: Settings) -> pd.DataFrame:
    """At most ``monitoring.drift_sample_rows`` rows of ``frame``, drawn by Spark (seeded), as model inputs."""
    rows, seed = settings.monitoring.drift_sample_rows, settings.dataset.split.seed
    if rows is not None and total > rows:
        frame = frame.sample(fraction=min(1.0, 1.05 * rows / total), seed=seed)  # a little over: trimmed below
    drawn = frame.select(*settings.dataset.features, PREDICTION).toPandas()
    inputs = features.normalise(drawn, settings.dataset)
    inputs[PREDICTION] = drawn[PREDICTION].to_numpy(dtype=float)
    return drift_reference.drift_sample(inputs, rows, seed)


def measure_batch(settings: Settings, name: str, pipeline: Pipeline, threshold: float) -> BatchMeasures:
    """The prepared batch ``name`` measured on Spark (see the module's docstring)."""
    dataset, source = settings.dataset, f"batch {name!r}"
    if name not in preparation.stored_batches(settings):
        known = preparation.stored_batches(settings)
        raise MonitorInputError(f"no batch {name!r} in {preparation.batches_dir(settings)} (known: {known or 'none'})")
    spark = spark_tables.session(settings)
    frame = spark.read.parquet(str(preparation.batch_path(settings, name)))
    try:
        typed = spark_tables.check_features(frame, dataset, source, labels=True)
    except DataValidationError as exc:
        lines = "\n".join(f"  - {p}" for p in exc.problems)
        raise MonitorInputError(f"{source} breaks the dataset's schema:\n{lines}") from None
    labeled = dataset.target in frame.columns
    target = F.col(dataset.target).cast("string")
    missing = sum((F.col(col).isNull().cast("long") for col in dataset.features), F.lit(0))
    found = typed.agg(F.count(F.lit(1)).alias("rows"), F.sum(missing).alias("missing")).first()
    assert found is not None
    rows = int(found["rows"])
    with_scores = scored(typed, pipeline, settings).cache()  # scored once: read for quality and for the sample
    try:
        scores: dict[str, float | None] = {"roc_auc": None, "pr_auc": None, "f1": None}
        if labeled:
            positive = (target == dataset.positive_label).cast("int").alias("y")
            pairs = with_scores.select(positive, PREDICTION).toPandas()
            scores = quality(pairs["y"].to_numpy(dtype=np.int64), pairs[PREDICTION].to_numpy(dtype=float), threshold)
        drawn = sample(with_scores, rows, settings)
    finally:
        with_scores.unpersist()
    cells = rows * len(dataset.features)
    missing_share = float(found["missing"] or 0) / cells if cells else 0.0
    return BatchMeasures(rows=rows, missing_share=missing_share, scores=scores, sample=drawn)


def unseen_reference(settings: Settings, pipeline: Pipeline) -> pd.DataFrame:
    """``drift_reference.unseen_reference`` read and sampled by Spark: the validation and test rows."""
    spark = spark_tables.session(settings)
    paths = [str(settings.prepared_dir / f"{name}.parquet") for name in drift_reference.REFERENCE_SPLITS]
    frame = spark_tables.typed(spark.read.parquet(*paths), settings.dataset)
    rows, seed, total = settings.monitoring.drift_sample_rows, settings.dataset.split.seed, frame.count()
    if rows is not None and total > rows:
        frame = frame.sample(fraction=min(1.0, 1.05 * rows / total), seed=seed)
    drawn = features.normalise(frame.select(*settings.dataset.features).toPandas(), settings.dataset)
    reference = drift_reference.drift_sample(drawn, rows, seed)
    reference[PREDICTION] = drift_reference.probabilities(pipeline, reference)
    return reference
