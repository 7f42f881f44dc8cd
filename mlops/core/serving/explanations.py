"""Why the model scored a record so: exact additive log-odds contributions per input feature.

XGBoost's own TreeSHAP (``pred_contribs``) or a linear model's terms, over the compiled scorer's encoding, summed
back from encoded columns (one-hot columns, or a native category's code) to the input feature they came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlops.core import families
from mlops.core.serving.scoring import CompiledScorer, Record, Scorer


class ExplanationUnavailable(ValueError):
    """The model family has no exact per-feature contributions here; the message says which have."""


@dataclass(frozen=True)
class Explanation:
    base_value: float  # log-odds before any feature
    contributions: dict[str, float]  # log-odds added by each input feature (its one-hot columns summed)
    probability: float


def explain(scorer: Scorer, record: Record) -> Explanation:
    """Exact additive log-odds contributions: XGBoost ``pred_contribs`` (TreeSHAP) or a linear model's terms."""
    if not isinstance(scorer, CompiledScorer):
        raise ExplanationUnavailable("explanations need the compiled scoring path, which this model does not have")
    encoded = scorer.encode([record])
    estimator = scorer.estimator
    family = type(estimator).__name__
    if family == "XGBClassifier":
        import xgboost  # local import: only XGBoost models need it

        booster = estimator.get_booster()
        matrix = xgboost.DMatrix(encoded, feature_types=booster.feature_types, enable_categorical=True)
        contribs = booster.predict(matrix, pred_contribs=True)[0]
        per_column, base = contribs[:-1].astype("float64"), float(contribs[-1])
    elif family == "LogisticRegression":
        per_column = np.asarray(estimator.coef_[0], dtype="float64") * encoded[0]
        base = float(estimator.intercept_[0])
    else:
        raise ExplanationUnavailable(
            f"per-feature contributions are available for {', '.join(families.explained())} models; "
            f"the deployed model is a {family}"
        )
    contributions: dict[str, float] = {}
    for feature, value in zip(scorer.output_features, per_column.tolist(), strict=True):
        contributions[feature] = contributions.get(feature, 0.0) + value
    return Explanation(base, contributions, float(scorer.predict([record])[0]))
