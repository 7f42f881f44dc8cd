"""The monitor on Spark (local[2]) against the pandas engine, on the bank's summer batch and the champion.

Counts, missing share and quality are over every row on both engines, so they agree exactly; with every row in
Evidently's sample the drift agrees too; with a smaller sample the sample has its configured size on both. A
batch that breaks the schema is refused by both with the same message, before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from mlops.core import config
from mlops.core.data import preparation
from mlops.core.monitoring import drift_metrics
from mlops.core.monitoring.monitored_inputs import MonitorInputError

pytestmark = [pytest.mark.postgres, pytest.mark.mlflow, pytest.mark.slow, pytest.mark.spark]
BATCH = "summer"


def on(settings: config.Settings, engine: str, sample_rows: int | None = 100_000) -> config.Settings:
    compute = settings.compute.model_copy(update={"engine": engine, "spark_master": "local[2]"})
    monitoring = settings.monitoring.model_copy(update={"drift_sample_rows": sample_rows})
    return settings.model_copy(update={"compute": compute, "monitoring": monitoring})


@pytest.fixture(scope="module")
def own_settings(
    platform_env: dict[str, str], make_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> config.Settings:
    env = {
        **os.environ,
        "MLOPS_STORES__MONITORING_DB": make_database("spark_monitor"),
        "MLOPS_MONITORING__REPORTS_DIR": str(tmp_path_factory.mktemp("spark-evidently")),
    }
    return config.load(environ=env)


def test_spark_measures_every_row_as_pandas_does_and_evidently_sees_the_same_drift(
    champion: str, own_settings: config.Settings
) -> None:
    results = {engine: drift_metrics.monitor(on(own_settings, engine), batch=BATCH) for engine in ("pandas", "spark")}
    pandas_run, spark_run = results["pandas"], results["spark"]
    rows = len(preparation.load_batch(own_settings, BATCH))
    assert pandas_run.rows == spark_run.rows == rows == spark_run.sample_rows  # under the sample size: every row
    assert spark_run.model_version == pandas_run.model_version
    assert spark_run.missing_share == pytest.approx(pandas_run.missing_share, abs=1e-12)
    for metric in ("roc_auc", "pr_auc", "f1"):
        assert getattr(spark_run, metric) == pytest.approx(getattr(pandas_run, metric), abs=1e-9), metric
    assert spark_run.prediction_drift == pytest.approx(pandas_run.prediction_drift, abs=1e-9)
    assert spark_run.prediction_threshold == pytest.approx(pandas_run.prediction_threshold, abs=1e-9)
    scores = {engine: {c.column: c.score for c in run.columns} for engine, run in results.items()}
    assert scores["spark"] == pytest.approx(scores["pandas"], abs=1e-9)
    assert [r["id"] for r in drift_metrics.runs(own_settings, limit=2)] == [spark_run.run_id, pandas_run.run_id]


def test_a_sampled_spark_run_compares_the_configured_sample_and_keeps_exact_counts(
    champion: str, own_settings: config.Settings
) -> None:
    pandas_run = drift_metrics.monitor(on(own_settings, "pandas", 3_000), batch=BATCH)
    spark_run = drift_metrics.monitor(on(own_settings, "spark", 3_000), batch=BATCH)
    assert spark_run.sample_rows == pandas_run.sample_rows == 3_000
    assert spark_run.rows == pandas_run.rows > 3_000
    assert spark_run.roc_auc == pytest.approx(pandas_run.roc_auc, abs=1e-9)
    stored = drift_metrics.runs(own_settings, limit=1)[0]
    assert (stored["rows"], stored["sample_rows"]) == (spark_run.rows, 3_000)


def test_a_broken_batch_is_refused_by_both_engines_alike(champion: str, own_settings: config.Settings) -> None:
    batch = preparation.load_batch(own_settings, BATCH).head(500).astype({"age": str})
    batch.loc[[4, 9], "age"] = "old"
    batch.loc[[11], own_settings.dataset.target] = "perhaps"
    path = preparation.batch_path(own_settings, "broken-for-spark")
    batch.to_parquet(path, index=False)
    try:
        before = len(drift_metrics.runs(own_settings, limit=100))
        messages = {}
        for engine in ("pandas", "spark"):
            with pytest.raises(MonitorInputError) as refused:
                drift_metrics.monitor(on(own_settings, engine), batch="broken-for-spark")
            messages[engine] = str(refused.value)
        assert messages["spark"] == messages["pandas"]
        assert "age: not a finite number (2 bad rows)" in messages["spark"]
        assert "y: label not in ['no', 'yes'] (1 bad row)" in messages["spark"]
        assert len(drift_metrics.runs(own_settings, limit=100)) == before
    finally:
        path.unlink()
