"""Scoring a table in process: the predictor's scorer over a DataFrame, a chunk of rows at a time.

One function for every engine: a pandas frame (``compute.engine: pandas``) and each Arrow batch that Spark hands
to ``mapInPandas`` (``compute.engine: spark``) are scored here, by the scorer the predictor serves
(``scoring.scorer_for``), so a batch scored offline gets the predictor's probabilities. Columns go to the scorer
as a :class:`ColumnBatch` (no record dicts): numbers as float64 arrays, categories as they are (a pandas
``category`` column is looked up by its codes, a category at a time).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from mlops.core.config import Dataset
from mlops.core.serving.column_batches import ColumnBatch
from mlops.core.serving.scoring import PipelineScorer, Scorer

CHUNK_ROWS = 250_000  # rows encoded at once: bounds the dense matrix (rows x encoded width x 8 bytes)


def column_batch(frame: pd.DataFrame, dataset: Dataset) -> ColumnBatch:
    """The frame's features as columns; the frame must hold them (``validation.feature_problems`` says why not)."""
    numeric = {col: pd.to_numeric(frame[col]).to_numpy(dtype="float64", na_value=np.nan) for col in dataset.numerical}
    categorical: dict[str, np.ndarray] = {}
    for col in dataset.categorical:
        values = frame[col]
        # the scorer reads a Categorical by its codes; other columns as objects, NaN and None alike missing
        categorical[col] = values.array if isinstance(values.dtype, pd.CategoricalDtype) else values.to_numpy(object)
    return ColumnBatch(numeric, categorical, list(dataset.features))


def chunks(frame: pd.DataFrame, rows: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), rows):
        yield frame.iloc[start : start + rows]


def probabilities(scorer: Scorer, frame: pd.DataFrame, dataset: Dataset, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """The positive class's probability of every row of ``frame``, in order."""
    if isinstance(scorer, PipelineScorer):  # the fallback scores frames itself
        parts = [scorer.pipeline.predict_proba(chunk[dataset.features])[:, 1] for chunk in chunks(frame, chunk_rows)]
    else:
        parts = [scorer.predict(column_batch(chunk, dataset)) for chunk in chunks(frame, chunk_rows)]
    return np.concatenate(parts) if parts else np.empty(0)
