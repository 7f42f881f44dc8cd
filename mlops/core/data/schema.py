"""The feature schema of a trained model, taken from its training data.

It travels with every candidate run as the artifact ``feature_schema.json``: the predictor validates
requests against it (types, allowed categories, which fields may be missing) and the app builds its form
from it (choices for categories, observed bounds for numbers).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from mlops.core.config import Dataset

ARTIFACT = "feature_schema.json"


@dataclass(frozen=True)
class NumericalFeature:
    minimum: float
    maximum: float
    median: float
    nullable: bool
    integer: bool  # every training value was a whole number (a hint for forms, not a constraint)


@dataclass(frozen=True)
class CategoricalFeature:
    categories: list[str]
    nullable: bool  # missing values were seen in training (they are a category of their own)


@dataclass(frozen=True)
class FeatureSchema:
    numerical: dict[str, NumericalFeature] = field(default_factory=dict)
    categorical: dict[str, CategoricalFeature] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return [*self.numerical, *self.categorical]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> FeatureSchema:
        return cls(
            numerical={k: NumericalFeature(**v) for k, v in payload["numerical"].items()},
            categorical={k: CategoricalFeature(**v) for k, v in payload["categorical"].items()},
        )


def from_training(frame: pd.DataFrame, dataset: Dataset) -> FeatureSchema:
    """Observed ranges and categories of the training frame, in the dataset's feature order."""
    numerical = {}
    for col in dataset.numerical:
        values = pd.to_numeric(frame[col])
        present = values.dropna()
        numerical[col] = NumericalFeature(
            minimum=float(present.min()),
            maximum=float(present.max()),
            median=float(present.median()),
            nullable=col in dataset.nullable_numerical,
            integer=bool((present == present.round()).all()),
        )
    categorical = {
        col: CategoricalFeature(
            categories=sorted(str(v) for v in frame[col].dropna().unique()),
            nullable=bool(frame[col].isna().any()),
        )
        for col in dataset.categorical
    }
    return FeatureSchema(numerical, categorical)
