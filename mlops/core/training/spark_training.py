"""Training on Spark (``compute.engine: spark``): XGBoost fitted by ``xgboost.spark`` on the executors, then
logged, registered and served exactly like a candidate trained in this process.

- The preprocessing is the pandas engine's own ColumnTransformer. Spark computes what it learns over the whole
  training split in one aggregation (``spark_tables.feature_schema``: exact medians, every category), and it is
  fitted on the few rows that hold those statistics (``features.statistics_frame``).
- Executors apply that fitted preprocessing to their Arrow batches (``mapInPandas``), so the booster learns from the
  very codes the served pipeline computes, and ``SparkXGBClassifier`` trains on them (categories as categories,
  ``feature_types``), one worker per Spark task slot.
- The booster goes back into the family's ``XGBClassifier`` after that preprocessing: one sklearn Pipeline, the
  artifact every other candidate is, so deploy, the predictor and retrain take it unchanged. Its probabilities are
  compared with Spark's own on a sample of the validation split (``spark_parity_max_abs_diff``, logged).

Parameters are ``training.spark_params`` (no search). Metrics come from Spark's predictions; only the labels and
probabilities of the validation and test splits reach this process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame as SparkFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from rich.console import Console
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from xgboost.spark import SparkXGBClassifier, SparkXGBClassifierModel

from mlops.core import reporting
from mlops.core.config import Settings
from mlops.core.data import features, spark_tables
from mlops.core.data.preparation import SPLITS
from mlops.core.training import evaluation, registry, tuning

FAMILY = "xgboost"
LABEL, SPARK_PROBABILITY = "__label__", "__spark_probability__"
PARITY_SAMPLE_ROWS = 20_000  # validation rows the logged pipeline re-scores against Spark's predictions


def read_splits(settings: Settings) -> dict[str, SparkFrame]:
    """The prepared train, validation and test splits (files or folders of Parquet), typed, with the 0/1 label."""
    spark = spark_tables.session(settings)
    dataset = settings.dataset
    out = {}
    for name in SPLITS:
        path = settings.prepared_dir / f"{name}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: run the prepare pipeline first")
        frame = spark_tables.typed(spark.read.parquet(str(path)), dataset)
        label = (F.col(dataset.target).cast("string") == dataset.positive_label).cast("int")
        out[name] = frame.withColumn(LABEL, label)
    return out


def encoded_batches(
    frames: Iterator[pd.DataFrame], preprocess: ColumnTransformer, settings: Settings, names: list[str]
) -> Iterator[pd.DataFrame]:
    """``mapInPandas``'s body: each batch's model inputs, as the served pipeline computes them, beside its rows."""
    for frame in frames:
        codes = preprocess.transform(features.normalise(frame, settings.dataset))
        yield frame.assign(**{name: codes[:, i] for i, name in enumerate(names)})


def encode(frame: SparkFrame, preprocess: ColumnTransformer, settings: Settings) -> tuple[SparkFrame, list[str]]:
    # by position: the preprocessing's own names may hold what Spark reads as a path (``cat__job_admin.``)
    names = [f"__in__{i}" for i in range(len(preprocess.get_feature_names_out()))]
    fields = [*frame.schema.fields, *(T.StructField(name, T.DoubleType()) for name in names)]
    encoded = frame.mapInPandas(
        lambda frames: encoded_batches(frames, preprocess, settings, names), T.StructType(fields)
    )
    return encoded, names


def classifier(
    settings: Settings, preprocess: ColumnTransformer, inputs: list[str], workers: int
) -> SparkXGBClassifier:
    native = settings.training.categorical_encoding == "native"
    types = ["c" if native and str(name).startswith("cat__") else "q" for name in preprocess.get_feature_names_out()]
    return SparkXGBClassifier(
        features_col=inputs,
        label_col=LABEL,
        num_workers=workers,
        feature_types=types,
        tree_method="hist",
        eval_metric="logloss",
        random_state=settings.training.seed,
        verbose=False,  # no line per boosting round
        **dict[str, Any](settings.training.spark_params),  # xgboost's own parameters, any of them
    )


def served_model(fitted: SparkXGBClassifierModel, settings: Settings) -> Any:
    """The booster in the family's own XGBClassifier (told which inputs are categories), as tuning builds it."""
    model = tuning.estimator(FAMILY, dict(settings.training.spark_params), settings)
    model.load_model(bytearray(fitted.get_booster().save_raw(raw_format="ubj")))
    return model


def spark_probabilities(fitted: SparkXGBClassifierModel, frame: SparkFrame) -> SparkFrame:
    return fitted.transform(frame).withColumn(SPARK_PROBABILITY, vector_to_array(F.col("probability"))[1])


def _labels_and_scores(scored: SparkFrame) -> tuple[np.ndarray, np.ndarray]:
    collected = scored.select(LABEL, SPARK_PROBABILITY).toPandas()
    return collected[LABEL].to_numpy(dtype=np.int64), collected[SPARK_PROBABILITY].to_numpy(dtype=float)


def parity(pipeline: Pipeline, scored: SparkFrame, settings: Settings) -> tuple[float, pd.DataFrame]:
    """The largest gap between the pipeline's probabilities and Spark's on a seeded validation sample (and the
    sample: its features and Spark's probability)."""
    total = scored.count()
    fraction = min(1.0, PARITY_SAMPLE_ROWS / max(total, 1))
    sample = scored.sample(fraction=fraction, seed=settings.training.seed) if fraction < 1 else scored
    rows = sample.select(*settings.dataset.features, SPARK_PROBABILITY).toPandas()
    served = pipeline.predict_proba(features.normalise(rows, settings.dataset))[:, 1]
    return float(np.max(np.abs(served - rows[SPARK_PROBABILITY].to_numpy()), initial=0.0)), rows


@dataclass
class SparkTrainingResult(tuning.TrainingResult):
    # validation rows (features) with Spark's own probability: what the logged pipeline was compared with
    parity_sample: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)


def train_candidate(
    splits: dict[str, SparkFrame], settings: Settings, console: Console
) -> tuple[tuning.Candidate, pd.DataFrame]:
    dataset = settings.dataset
    started = time.perf_counter()
    with mlflow.start_run(run_name=f"{FAMILY}-spark", nested=True) as run:
        console.print("computing the training split's statistics on Spark")
        feature_schema = spark_tables.feature_schema(splits["train"], dataset)
        preprocess = features.preprocessor(dataset, FAMILY, settings.training.categorical_encoding)
        preprocess.fit(features.statistics_frame(feature_schema, dataset))
        encoded = {}
        for name, frame in splits.items():
            encoded[name], inputs = encode(frame, preprocess, settings)
        spark = splits["train"].sparkSession
        workers = spark.sparkContext.defaultParallelism
        console.print(f"training {FAMILY} with xgboost.spark on {workers} workers ({settings.compute.spark_master})")
        fitted = classifier(settings, preprocess, inputs, workers).fit(encoded["train"])
        pipeline = Pipeline([("preprocess", preprocess), ("model", served_model(fitted, settings))])
        scored_validation = spark_probabilities(fitted, encoded["validation"])
        y_val, proba_val = _labels_and_scores(scored_validation)
        y_test, proba_test = _labels_and_scores(spark_probabilities(fitted, encoded["test"]))
        threshold = evaluation.choose_threshold(y_val, proba_val, settings.training.threshold)
        lift = settings.training.lift_fraction
        validation = evaluation.metrics(y_val, proba_val, threshold, lift)
        test = evaluation.metrics(y_test, proba_test, threshold, lift)
        gap, sample = parity(pipeline, scored_validation, settings)
        mlflow.log_metric("spark_parity_max_abs_diff", gap)
        seconds = time.perf_counter() - started
        params = {**settings.training.spark_params, "engine": "spark", "spark_workers": workers}
        info = tuning.log_candidate(
            FAMILY,
            params,
            pipeline,
            (validation, test),
            (y_val, proba_val),
            feature_schema,
            features.normalise(sample.head(50), dataset),
            settings,
        )
    metric = validation[settings.training.selection_metric]
    search = tuning.Search(dict(settings.training.spark_params), 1, seconds, metric)
    candidate = tuning.Candidate(
        FAMILY, search.params, pipeline, threshold, validation, test, run.info.run_id, info.model_uri, search
    )
    return candidate, sample


def train(settings: Settings, console: Console | None = None) -> SparkTrainingResult:
    """Train XGBoost on Spark from the prepared splits; register it with alias ``challenger``."""
    console = console or reporting.console()
    client = registry.configure(settings)
    splits = read_splits(settings)
    started = datetime.now(UTC)
    with mlflow.start_run(run_name=f"train-spark-{started:%Y%m%d-%H%M%S}") as parent:
        mlflow.set_tags({"dataset": settings.dataset.name, "stage": "training", "engine": "spark"})
        mlflow.log_params(
            {
                "families": FAMILY,
                "engine": "spark",
                "spark_master": settings.compute.spark_master,
                "selection_metric": settings.training.selection_metric,
                "features": ",".join(settings.dataset.features),
            }
        )
        candidate, sample = train_candidate(splits, settings, console)
        registered, board = tuning.register_best(client, [candidate], settings, parent.info.run_id, started)
    metric = settings.training.selection_metric
    return SparkTrainingResult(parent.info.run_id, [candidate], registered, metric, board, sample)
