"""Training on Spark (local[2]): xgboost.spark fits the booster, the registry gets the same kind of artifact every
candidate is, and the predictor serves it unchanged, with the probabilities Spark itself computed (to 1e-6).

The model is registered under a name of its own, so the suite's champion and challenger stay as they are.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from mlops.core import config
from mlops.core.data import features, preparation, schema
from mlops.core.serving import scoring
from mlops.core.training import registry, spark_training

pytestmark = [pytest.mark.postgres, pytest.mark.mlflow, pytest.mark.slow, pytest.mark.spark]
PARITY = 1e-6


@pytest.fixture(scope="module")
def on_spark(settings: config.Settings, prepared: object) -> config.Settings:
    compute = settings.compute.model_copy(update={"engine": "spark", "spark_master": "local[2]"})
    training = settings.training.model_copy(
        update={
            "model_name": f"{settings.training.model_name}-spark",
            "categorical_encoding": "native",
            "spark_params": {"n_estimators": 60, "max_depth": 5, "learning_rate": 0.15},
        }
    )
    return settings.model_copy(update={"compute": compute, "training": training})


@pytest.fixture(scope="module")
def trained_on_spark(on_spark: config.Settings) -> spark_training.SparkTrainingResult:
    return spark_training.train(on_spark)


def test_xgboost_spark_registers_a_challenger_the_predictor_serves_with_sparks_probabilities(
    on_spark: config.Settings, trained_on_spark: spark_training.SparkTrainingResult
) -> None:
    result, dataset = trained_on_spark, on_spark.dataset
    name = on_spark.training.model_name
    client = registry.configure(on_spark)
    challenger = registry.version_by_alias(client, name, registry.CHALLENGER)
    assert challenger is not None and str(challenger.version) == result.registered.version
    assert challenger.tags["family"] == "xgboost" and 0 < float(challenger.tags["threshold"]) < 1
    # what the predictor loads: the registered pipeline, by alias, with the run's feature schema
    pipeline = registry.load_pipeline(name, registry.CHALLENGER)
    run = client.get_run(challenger.run_id)
    logged = schema.FeatureSchema.from_dict(mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{schema.ARTIFACT}"))
    scorer = scoring.scorer_for(pipeline, dataset, scoring.schema_probe(logged))
    sample = result.parity_sample
    validation_rows = len(preparation.load_split(on_spark, "validation"))
    assert len(sample) == validation_rows  # the bank's validation split is under the sample size: every row
    served = scorer.predict(scoring.frame_records(sample, dataset.features))
    assert np.max(np.abs(served - sample[spark_training.SPARK_PROBABILITY].to_numpy())) <= PARITY
    assert run.data.metrics["spark_parity_max_abs_diff"] <= PARITY
    assert run.data.params["engine"] == "spark" and run.data.params["spark_workers"] == "2"
    # honest quality on held-out rows (the bank without `duration` sits near 0.79 ROC-AUC)
    assert result.best.validation["roc_auc"] > 0.75 and result.best.test["roc_auc"] > 0.75


def test_the_spark_fitted_preprocessing_is_the_one_pandas_fits_on_the_whole_split(
    on_spark: config.Settings, trained_on_spark: spark_training.SparkTrainingResult
) -> None:
    dataset = on_spark.dataset
    train = preparation.load_split(on_spark, "train")
    validation = features.normalise(preparation.load_split(on_spark, "validation"), dataset)
    pandas_fitted = features.preprocessor(dataset, "xgboost", "native").fit(features.normalise(train, dataset))
    spark_fitted = trained_on_spark.best.pipeline[0]
    np.testing.assert_array_equal(spark_fitted.transform(validation), pandas_fitted.transform(validation))
    logged = schema.FeatureSchema.from_dict(
        mlflow.artifacts.load_dict(f"runs:/{trained_on_spark.best.run_id}/{schema.ARTIFACT}")
    )
    assert logged == schema.from_training(train, dataset)  # bounds, exact medians, categories
