"""Model families live in one registry (mlops.core.families): configuration, training, preprocessing,
explanations and model loading all read it."""

from __future__ import annotations

import optuna
import pytest

from mlops.core import config, families
from mlops.core.data import features
from mlops.core.training import registry


def test_an_unknown_family_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(
        config.ConfigError, match=r"training\.families.*unknown model family 'svm' \(known: logistic_regression"
    ):
        config.load(environ={"MLOPS_TRAINING__FAMILIES": "[xgboost, svm]"})
    with pytest.raises(config.ConfigError, match="at least one model family"):
        config.load(environ={"MLOPS_TRAINING__FAMILIES": "[]"})
    assert config.load(environ={}).training.families == list(families.FAMILIES)


@pytest.mark.parametrize("name", families.FAMILIES)
def test_every_entry_makes_a_seeded_estimator_from_its_search_space(name: str) -> None:
    family = families.get(name)
    params = family.search_space(optuna.trial.FixedTrial(_sampled_params(name)))
    estimator = family.make(params, 7, 1)
    assert {k: v for k, v in estimator.get_params().items() if k in params} == params
    assert estimator.get_params()["random_state"] == 7


def test_the_entries_drive_scaling_explanations_and_trusted_types() -> None:
    dataset = config.load(environ={}).dataset
    scaled = {
        name
        for name in families.FAMILIES
        if "scale" in dict(features.preprocessor(dataset, name).transformers[0][1].steps)
    }
    assert scaled == {name for name, family in families.FAMILIES.items() if family.scaled} == {"logistic_regression"}
    assert set(families.explained()) == {"logistic_regression", "xgboost"}
    for family in families.FAMILIES.values():
        assert set(family.trusted_types) <= set(registry.SKOPS_TRUSTED_TYPES)


def _sampled_params(name: str) -> dict[str, float | int]:
    """Values the family's search space draws (seeded), to replay through a FixedTrial."""
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    families.get(name).search_space(trial)
    return dict(trial.params)
