"""``training.categorical_encoding: native``: a code per category variable, split on as categories by XGBoost and
HistGradientBoosting; the compiled scorer gives the pipeline's probabilities and the model is no worse."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mlops.core import config
from mlops.core.data import preparation
from mlops.core.serving import explanations, scoring
from mlops.core.training import tuning

FIXED = {
    "xgboost": {"n_estimators": 200, "learning_rate": 0.1, "max_depth": 5},
    "hist_gradient_boosting": {"max_iter": 200, "learning_rate": 0.1},
}


def bank_settings(bank_csv: Path, encoding: str, family: str) -> config.Settings:
    return config.load(
        environ={
            **os.environ,
            "MLOPS_DATASET__SOURCE__PATH": str(bank_csv),
            "MLOPS_TRAINING__CATEGORICAL_ENCODING": encoding,
            "MLOPS_TRAINING__FAMILIES": f"[{family}]",
        }
    )


def test_native_categories_are_refused_for_a_family_without_them(bank_csv: Path) -> None:
    with pytest.raises(config.ConfigError, match="native is supported by xgboost, hist_gradient_boosting, not by"):
        bank_settings(bank_csv, "native", "logistic_regression")


@pytest.mark.parametrize("family", list(FIXED))
def test_native_categories_score_alike_compiled_and_do_no_worse(bank_csv: Path, family: str) -> None:
    aucs = {}
    for encoding in ("onehot", "native"):
        settings = bank_settings(bank_csv, encoding, family)
        parts = preparation.split(preparation.load_raw(settings, allow_download=False), settings)
        pipeline = tuning.build(family, FIXED[family], settings)
        pipeline.fit(parts.train, preparation.labels(parts.train, settings))
        proba = pipeline.predict_proba(parts.test)[:, 1]
        aucs[encoding] = roc_auc_score(preparation.labels(parts.test, settings), proba)
    width = len(pipeline[:-1].get_feature_names_out())
    assert width == len(settings.dataset.features)  # one code per variable, not a column per category
    records = scoring.frame_records(parts.test, settings.dataset.features)
    records[0] = {**records[0], "job": None, "education": "a category never seen"}  # missing: its code; unseen: NaN
    compiled = scoring.compile_pipeline(pipeline)
    expected = scoring.PipelineScorer(pipeline, settings.dataset).predict(records)
    for rows in (records[:1], records[:5], records):  # the few-records path and the numpy path
        assert np.max(np.abs(compiled.predict(rows) - expected[: len(rows)])) <= scoring.PARITY_TOLERANCE
    assert aucs["native"] >= aucs["onehot"] - 0.005, aucs
    if family == "xgboost":  # TreeSHAP over category codes: contributions sum to the score's log-odds
        explained = explanations.explain(compiled, records[0])
        margin = explained.base_value + sum(explained.contributions.values())
        assert explained.probability == pytest.approx(1 / (1 + np.exp(-margin)), abs=1e-6)
        assert set(explained.contributions) == set(settings.dataset.features)


def test_a_native_xgboost_pipeline_comes_back_from_mlflow_scoring_the_same(bank_csv: Path, tmp_path: Path) -> None:
    import mlflow

    from mlops.core.training import registry

    settings = bank_settings(bank_csv, "native", "xgboost")
    parts = preparation.split(preparation.load_raw(settings, allow_download=False), settings)
    pipeline = tuning.build("xgboost", FIXED["xgboost"], settings)
    pipeline.fit(parts.train, preparation.labels(parts.train, settings))
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        experiment = mlflow.create_experiment("native-categories", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            info = registry.log_pipeline(pipeline, parts.train[settings.dataset.features].head(50))
        loaded = mlflow.sklearn.load_model(info.model_uri)
    finally:
        mlflow.set_tracking_uri(previous)
    np.testing.assert_array_equal(loaded.predict_proba(parts.test)[:, 1], pipeline.predict_proba(parts.test)[:, 1])
