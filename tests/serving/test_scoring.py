"""The compiled scorer equals the fitted pipeline exactly, for every family, missing values included."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from mlops.core import config
from mlops.core.data import features
from mlops.core.families import FAMILIES
from mlops.core.serving import explanations, scoring


@pytest.fixture(scope="module")
def plain_settings() -> config.Settings:
    return config.load()


@pytest.fixture(scope="module")
def split(bank_frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    shuffled = bank_frame.sample(frac=1.0, random_state=3)
    return shuffled.iloc[:8000], shuffled.iloc[8000:]


@pytest.fixture(scope="module")
def fitted(split, fit_small, plain_settings):  # type: ignore[no-untyped-def]
    """One small fitted pipeline per family, shared by this module's tests."""
    cache: dict[str, Pipeline] = {}

    def get(family: str) -> Pipeline:
        if family not in cache:
            cache[family] = fit_small(family, split[0], plain_settings)
        return cache[family]

    return get


@pytest.mark.parametrize("family", FAMILIES)
def test_compiled_scorer_equals_the_pipeline(family, split, fitted, plain_settings) -> None:  # type: ignore[no-untyped-def]
    _, rest = split
    pipeline = fitted(family)
    records = scoring.frame_records(rest, plain_settings.dataset.features)
    assert any(r["poutcome"] is None for r in records) and any(r["month"] == "jun" for r in records)
    compiled = scoring.compile_pipeline(pipeline)
    expected = pipeline.predict_proba(features.normalise(rest, plain_settings.dataset))[:, 1]
    assert np.max(np.abs(compiled.predict(records) - expected)) <= 1e-12
    for i in range(30):  # single records take the plain-Python encoding
        # the plain-Python encoding may sum in another order than numpy: equal to the last bits
        assert abs(compiled.predict(records[i : i + 1])[0] - expected[i]) <= 1e-12
    # The encoding itself is the ColumnTransformer's, column for column.
    head = records[:500]
    transformed = pipeline[:-1].transform(features.frame_from_records(head, plain_settings.dataset))
    assert np.array_equal(compiled.encode(head), transformed)
    assert scoring.scorer_for(pipeline, plain_settings.dataset, head).kind == "compiled"


def test_an_unknown_step_falls_back_to_the_pipeline(split, fit_small, plain_settings) -> None:  # type: ignore[no-untyped-def]
    train, rest = split
    pipeline = fit_small("logistic_regression", train, plain_settings)
    numeric = pipeline[0].transformers[0][1]
    numeric.steps[-1] = ("scale", MinMaxScaler())  # a step the compiler does not know
    pipeline = Pipeline([("preprocess", pipeline[0]), ("model", pipeline[-1])])
    pipeline = pipeline.fit(features.normalise(train, plain_settings.dataset), (train["y"] == "yes").astype(int))
    with pytest.raises(scoring.UnsupportedPipeline, match="MinMaxScaler"):
        scoring.compile_pipeline(pipeline)
    records = scoring.frame_records(rest.head(300), plain_settings.dataset.features)
    scorer = scoring.scorer_for(pipeline, plain_settings.dataset, records)
    assert scorer.kind == "pipeline"
    assert scoring.max_difference(scorer, pipeline, records, plain_settings.dataset) == 0.0


@pytest.mark.parametrize("family", ["xgboost", "logistic_regression"])
def test_explanations_add_up_to_the_prediction(family, split, fitted, plain_settings) -> None:  # type: ignore[no-untyped-def]
    _, rest = split
    scorer = scoring.compile_pipeline(fitted(family))
    for record in scoring.frame_records(rest.head(20), plain_settings.dataset.features):
        explanation = explanations.explain(scorer, record)
        assert list(explanation.contributions) == plain_settings.dataset.features
        margin = explanation.base_value + sum(explanation.contributions.values())
        assert abs(1 / (1 + math.exp(-margin)) - explanation.probability) < 1e-5


@pytest.mark.parametrize("family", ["random_forest", "hist_gradient_boosting"])
def test_other_families_say_they_have_no_explanation(family, split, fitted, plain_settings) -> None:  # type: ignore[no-untyped-def]
    _, rest = split
    scorer = scoring.compile_pipeline(fitted(family))
    record = scoring.frame_records(rest.head(1), plain_settings.dataset.features)[0]
    with pytest.raises(explanations.ExplanationUnavailable, match="logistic_regression, xgboost"):
        explanations.explain(scorer, record)


@pytest.mark.parametrize("family", ["xgboost", "random_forest", "hist_gradient_boosting"])
def test_compiled_trees_equal_the_estimator_bit_for_bit(family, bank_frame, fitted, plain_settings) -> None:  # type: ignore[no-untyped-def]
    """The tree ensembles as numpy arrays (the few-record path) give the estimator's own probabilities
    exactly, on every row of the dataset and where a value is missing inside the model (default branches)."""
    from mlops.core.serving.compiled_trees import compile_estimator

    pipeline = fitted(family)
    if "n_jobs" in pipeline[-1].get_params():
        pipeline[-1].set_params(n_jobs=1)  # as the predictor runs it (a forest's sum order depends on it)
    records = scoring.frame_records(bank_frame, plain_settings.dataset.features)
    scorer = scoring.scorer_for(pipeline, plain_settings.dataset, records[:256])
    assert isinstance(scorer, scoring.CompiledScorer) and scorer.trees is not None
    encoded = scorer.encode(records)
    assert len(encoded) == 45_211
    expected = scorer._estimator_probabilities(encoded)
    assert np.array_equal(scorer.trees.probabilities(encoded).astype(expected.dtype), expected)
    holes = encoded[:2000].copy()
    holes[np.random.default_rng(0).random(holes.shape) < 0.3] = np.nan
    assert compile_estimator(pipeline[-1]).matches(scorer._estimator_probabilities, holes)
    assert np.array_equal(scorer.predict(records[:3]), expected[:3])  # the path single requests take


def test_models_without_trees_are_not_compiled_to_trees(fitted) -> None:  # type: ignore[no-untyped-def]
    from mlops.core.serving.compiled_trees import UnsupportedTrees, compile_estimator

    with pytest.raises(UnsupportedTrees, match="LogisticRegression"):
        compile_estimator(fitted("logistic_regression")[-1])


@pytest.mark.parametrize("kept", ["numerical", "categorical"])
@pytest.mark.parametrize("family", ["xgboost", "logistic_regression"])
def test_a_table_of_only_numbers_or_only_categories_compiles(kept, family, split, fit_small, plain_settings) -> None:  # type: ignore[no-untyped-def]
    """The preprocessing part with no columns is never fitted: the compiled scorer must not read it."""
    dataset = plain_settings.dataset
    only = dataset.model_copy(update={"numerical" if kept == "categorical" else "categorical": []})
    settings = plain_settings.model_copy(update={"dataset": only})
    train, rest = split
    pipeline = fit_small(family, train, settings)
    records = scoring.frame_records(rest.head(500), only.features)
    compiled = scoring.compile_pipeline(pipeline)
    expected = pipeline.predict_proba(features.normalise(rest.head(500), only))[:, 1]
    assert np.max(np.abs(compiled.predict(records) - expected)) <= 1e-12
    assert scoring.scorer_for(pipeline, only, records).kind == "compiled"
