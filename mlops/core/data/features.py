"""Preprocessing: one sklearn ColumnTransformer per model family, fitted inside the model Pipeline.

Missing categories are a category of their own (``__missing__``); missing numbers, where the dataset
allows them, take the training median. Categories become 0/1 columns (``onehot``) or, for the families that
split on categories themselves (``native``), one code per variable: the category's position among those seen
in training (``__missing__`` included), and NaN, the libraries' missing value, for one never seen. Records from
JSON (``None``) are normalised to NaN first so that the imputers treat them exactly as the training data's
empty cells.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from mlops.core import families
from mlops.core.config import Dataset
from mlops.core.data.schema import FeatureSchema

MISSING_CATEGORY = "__missing__"


def preprocessor(dataset: Dataset, family: str, encoding: str = "onehot") -> ColumnTransformer:
    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if families.get(family).scaled:  # linear models need scaled numbers; trees are invariant to scaling
        numeric_steps.append(("scale", StandardScaler()))
    encoder: tuple[str, Any] = (
        ("codes", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan))
        if encoding == "native"
        else ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))
    )
    categorical = Pipeline([("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)), encoder])
    return ColumnTransformer(
        [("num", Pipeline(numeric_steps), dataset.numerical), ("cat", categorical, dataset.categorical)],
        remainder="drop",
        verbose_feature_names_out=True,
    )


def normalise(frame: pd.DataFrame, dataset: Dataset) -> pd.DataFrame:
    """The model's input frame: configured columns in order, numbers as float64, missing as NaN; categories as
    objects, or as they are where they already are pandas categoricals (the encoders read both alike)."""
    out = pd.DataFrame(index=frame.index)
    for col in dataset.numerical:
        out[col] = pd.to_numeric(frame[col]).astype("float64")
    for col in dataset.categorical:
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            out[col] = frame[col]  # missing is NaN already; a code per cell, not a Python object (large batches)
            continue
        values = frame[col].astype(object)
        out[col] = values.where(values.notna(), np.nan)
    return out


def statistics_frame(feature_schema: FeatureSchema, dataset: Dataset) -> pd.DataFrame:
    """A few rows holding exactly what a tree family's preprocessing learns from training data: each number at
    its median and every category seen (a missing one where training had some). Fitted on these rows, the
    preprocessing is the one fitted on the whole training table, for a table no process holds (Spark). A scaled
    (linear) family also learns means and spreads, which these rows do not hold."""
    seen = {
        col: [*feature.categories, *([None] if feature.nullable else [])]
        for col, feature in feature_schema.categorical.items()
    }
    rows = max([1, *(len(values) for values in seen.values())])
    data: dict[str, list[Any]] = {col: [feature_schema.numerical[col].median] * rows for col in dataset.numerical}
    for col in dataset.categorical:
        values = seen[col] or [None]
        data[col] = [values[i % len(values)] for i in range(rows)]
    return normalise(pd.DataFrame(data), dataset)


def frame_from_records(records: Iterable[Mapping[str, Any]], dataset: Dataset) -> pd.DataFrame:
    """Build the model's input frame from dict records (JSON ``null`` becomes NaN, never ``None``)."""
    rows = list(records)
    data = {col: [row.get(col) for row in rows] for col in dataset.features}
    return normalise(pd.DataFrame(data), dataset)


def output_feature_names(pipeline: Pipeline) -> list[str]:
    """Names of the columns the model sees, e.g. ``cat__job_admin.``."""
    return [str(n) for n in pipeline[:-1].get_feature_names_out()]
