"""Model families: one entry each here, and a new family is one new entry.

An entry says how to make the family's unfitted estimator (its library is imported only then, so reading
the configuration imports none), its Optuna search space, whether numbers are standardised before it
(linear models; trees do not care), whether the predictor can explain its scores feature by feature
(``POST /explain``: XGBoost's own SHAP values, a linear model's exact contributions), how it is told which
inputs are category codes when ``training.categorical_encoding`` is ``native`` (the libraries' own categorical
support, one column per category variable instead of one per category), and which types skops must be told to
trust to load it back from the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelFamily:
    name: str
    make: Callable[[dict[str, Any], int, int], Any]  # (tuned parameters, seed, n_jobs) -> unfitted estimator
    # an optuna.Trial -> the parameters it suggests (optuna is not imported here: the predictor, which
    # reads this registry, is packaged with the libraries its modules import, and it never searches)
    search_space: Callable[[Any], dict[str, Any]]
    scaled: bool = False
    explained: bool = False
    trusted_types: tuple[str, ...] = ()
    # (unfitted estimator, one flag per model input: is it a category code?) -> the estimator told so
    native_categorical: Callable[[Any, list[bool]], Any] | None = None


def _logistic_regression(params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, random_state=seed, **params)


def _random_forest(params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(random_state=seed, n_jobs=n_jobs, **params)


def _xgboost(params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    from xgboost import XGBClassifier

    return XGBClassifier(tree_method="hist", eval_metric="logloss", random_state=seed, n_jobs=n_jobs, **params)


def _xgboost_categories(estimator: Any, codes: list[bool]) -> Any:
    return estimator.set_params(enable_categorical=True, feature_types=["c" if code else "q" for code in codes])


def _hist_gradient_boosting_categories(estimator: Any, codes: list[bool]) -> Any:
    return estimator.set_params(categorical_features=codes)


def _hist_gradient_boosting(params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=seed, **params)


FAMILIES: dict[str, ModelFamily] = {
    family.name: family
    for family in (
        ModelFamily(
            "logistic_regression",
            _logistic_regression,
            lambda trial: {"C": trial.suggest_float("C", 1e-3, 10.0, log=True)},
            scaled=True,
            explained=True,
        ),
        ModelFamily(
            "random_forest",
            _random_forest,
            lambda trial: {
                "n_estimators": trial.suggest_int("n_estimators", 100, 400, step=50),
                "max_depth": trial.suggest_int("max_depth", 4, 16),
                "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 50, log=True),
                "max_features": trial.suggest_float("max_features", 0.1, 0.6),
            },
            trusted_types=("sklearn.tree._tree.Tree",),
        ),
        ModelFamily(
            "xgboost",
            _xgboost,
            lambda trial: {
                "n_estimators": trial.suggest_int("n_estimators", 100, 800, step=50),
                "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
                "max_depth": trial.suggest_int("max_depth", 2, 8),
                "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 50.0, log=True),
                "subsample": trial.suggest_float("subsample", 0.5, 1.0),
                "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
                "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
            },
            explained=True,
            trusted_types=("xgboost.core.Booster", "xgboost.sklearn.XGBClassifier"),
            native_categorical=_xgboost_categories,
        ),
        ModelFamily(
            "hist_gradient_boosting",
            _hist_gradient_boosting,
            lambda trial: {
                "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
                "max_iter": trial.suggest_int("max_iter", 100, 500, step=50),
                "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 8, 64, log=True),
                "min_samples_leaf": trial.suggest_int("min_samples_leaf", 10, 200, log=True),
                "l2_regularization": trial.suggest_float("l2_regularization", 1e-3, 10.0, log=True),
            },
            trusted_types=("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",),
            native_categorical=_hist_gradient_boosting_categories,
        ),
    )
}


def get(name: str) -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r} (known: {', '.join(FAMILIES)})") from None


def native_categorical() -> list[str]:
    """The families that take category codes as categories (``training.categorical_encoding: native``)."""
    return [name for name, family in FAMILIES.items() if family.native_categorical is not None]


def explained() -> list[str]:
    """The families whose scores the predictor explains feature by feature."""
    return [name for name, family in FAMILIES.items() if family.explained]


def trusted_types() -> list[str]:
    """Every type skops must trust to load any family's pipeline (numpy's dtype is in all of them)."""
    found = ["numpy.dtype"] + [t for family in FAMILIES.values() for t in family.trusted_types]
    return sorted(set(found))
