"""Fast exact scoring: the fitted preprocessing compiled into plain numpy, feeding the fitted estimator.

On one record the sklearn ColumnTransformer costs ~5-6 ms (pandas, validation, per-step dispatch) while the
model itself needs a fraction of a millisecond. :func:`compile_pipeline` reads the fitted parameters of
our preprocessing (``features.preprocessor``: median/constant ``SimpleImputer``, ``StandardScaler``,
``OneHotEncoder(handle_unknown="ignore")`` or, for native categories, ``OrdinalEncoder`` with unknown as NaN)
and encodes records with the same float64 arithmetic into the same dense matrix, so the estimator sees
identical input and returns identical probabilities. Anything it does not recognise raises
:class:`UnsupportedPipeline`; :func:`scorer_for` then falls back to the pipeline itself, and both paths are
checked against ``pipeline.predict_proba`` before serving.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from mlops.core.config import Dataset
from mlops.core.data.features import frame_from_records
from mlops.core.data.schema import FeatureSchema
from mlops.core.serving.column_batches import ColumnBatch
from mlops.core.serving.compiled_trees import CompiledTrees, UnsupportedTrees, compile_estimator

Record = Mapping[str, Any]
BIG_BATCH = 10_000  # from this many records on, the booster predicts with all cores
TREES_MAX_ROWS = 32  # up to this many rows, compiled trees beat the tree libraries' fixed per-call cost
FEW_RECORDS = 8  # up to this many records, encoding in plain Python beats building numpy blocks
PARITY_TOLERANCE = 1e-9  # the compiled path must match the pipeline to float rounding (it is exact in practice)


class UnsupportedPipeline(ValueError):
    """The pipeline holds a step the compiler does not know; the message names it."""


class Scorer(Protocol):
    kind: str

    def predict(self, records: Sequence[Record]) -> np.ndarray: ...


@dataclass
class NumericBlock:
    columns: list[str]
    fill: np.ndarray  # the imputer's medians, one per column
    mean: np.ndarray | None  # StandardScaler, when the family scales
    scale: np.ndarray | None

    @property
    def fill_list(self) -> list[float]:
        return self._lists[0]

    @property
    def mean_list(self) -> list[float] | None:
        return self._lists[1]

    @property
    def scale_list(self) -> list[float] | None:
        return self._lists[2]

    @cached_property
    def _lists(self) -> tuple[list[float], list[float] | None, list[float] | None]:
        as_list = lambda a: None if a is None else [float(v) for v in a]  # noqa: E731
        return [float(v) for v in self.fill], as_list(self.mean), as_list(self.scale)


@dataclass(frozen=True)
class CategoricalBlock:
    column: str
    fill: str  # what the constant imputer writes for a missing value
    index: dict[Any, int]  # category -> position in the block's one-hot columns (its code, if ordinal)
    width: int
    ordinal: bool = False  # one column holding the code (NaN: unseen), not one 0/1 column per category


def _positions(block: CategoricalBlock, column: np.ndarray) -> np.ndarray:
    """One-hot positions of a column's values (-1: unseen), looking each distinct value up once."""
    # a pandas Categorical factorizes from its codes; anything else as objects (None and NaN -> code -1)
    values = column if isinstance(column, pd.Categorical) else np.asarray(column, dtype=object)
    codes, distinct = pd.factorize(values, use_na_sentinel=True)
    lookup = np.array([block.index.get(v, -1) for v in distinct.tolist()] + [block.index.get(None, -1)], np.intp)
    return lookup[codes]


def _numeric_block(step: Any, columns: list[str]) -> NumericBlock:
    steps = step.steps if isinstance(step, Pipeline) else [("step", step)]
    fill: np.ndarray | None = None
    mean = scale = None
    for name, part in steps:
        if isinstance(part, SimpleImputer) and fill is None and mean is None:
            if part.strategy not in ("median", "mean", "constant") or not _imputes_nan(part):
                raise UnsupportedPipeline(f"numeric step {name!r}: imputer {part.strategy!r} is not supported")
            if part.add_indicator:
                raise UnsupportedPipeline(f"numeric step {name!r}: add_indicator is not supported")
            fill = np.asarray(part.statistics_, dtype="float64")
            if np.isnan(fill).any():  # sklearn drops such columns; we do not replicate that
                raise UnsupportedPipeline(f"numeric step {name!r}: a column had no value to impute from")
        elif isinstance(part, StandardScaler) and mean is None:
            mean = np.asarray(part.mean_, dtype="float64") if part.with_mean else np.zeros(len(columns))
            scale = np.asarray(part.scale_, dtype="float64") if part.with_std else np.ones(len(columns))
        else:
            raise UnsupportedPipeline(f"numeric step {name!r} ({type(part).__name__}) is not supported")
    if fill is None:
        raise UnsupportedPipeline("the numeric columns have no imputer")
    return NumericBlock(columns, fill, mean, scale)


def _imputes_nan(imputer: SimpleImputer) -> bool:
    missing = imputer.missing_values
    return isinstance(missing, float) and math.isnan(missing)


def _categorical_blocks(step: Any, columns: list[str]) -> list[CategoricalBlock]:
    steps = step.steps if isinstance(step, Pipeline) else [("step", step)]
    if len(steps) != 2:
        raise UnsupportedPipeline("categorical columns: expected an imputer followed by a one-hot encoder")
    (_, imputer), (_, encoder) = steps
    if not (isinstance(imputer, SimpleImputer) and imputer.strategy == "constant" and _imputes_nan(imputer)):
        raise UnsupportedPipeline("categorical columns: expected SimpleImputer(strategy='constant')")
    ordinal = isinstance(encoder, OrdinalEncoder)
    if ordinal:
        unknown = encoder.unknown_value
        if encoder.handle_unknown != "use_encoded_value" or not (isinstance(unknown, float) and math.isnan(unknown)):
            raise UnsupportedPipeline("categorical codes: expected OrdinalEncoder with unknown_value=NaN")
        if getattr(encoder, "_infrequent_enabled", False):
            raise UnsupportedPipeline("categorical codes: infrequent categories are not supported")
    else:
        if not isinstance(encoder, OneHotEncoder) or encoder.handle_unknown != "ignore":
            raise UnsupportedPipeline("categorical columns: expected OneHotEncoder(handle_unknown='ignore')")
        if encoder.drop is not None or getattr(encoder, "_infrequent_enabled", False):
            raise UnsupportedPipeline("categorical columns: drop / infrequent categories are not supported")
    blocks = []
    for column, categories in zip(columns, encoder.categories_, strict=True):
        index: dict[Any, int] = {value: i for i, value in enumerate(categories.tolist())}
        if imputer.fill_value in index:  # a missing value (None) is what the imputer turns into its constant
            index[None] = index[imputer.fill_value]
        width = 1 if ordinal else len(categories)
        blocks.append(CategoricalBlock(column, str(imputer.fill_value), index, width, ordinal=ordinal))
    return blocks


class CompiledScorer:
    """Records -> the ColumnTransformer's dense matrix (numpy only) -> the estimator's probabilities."""

    kind = "compiled"

    def __init__(self, numeric: NumericBlock | None, categorical: list[CategoricalBlock], estimator: Any) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.estimator = estimator
        self.trees: CompiledTrees | None = None  # set by compile_trees
        self.width = (len(numeric.columns) if numeric else 0) + sum(b.width for b in categorical)
        # Which input feature each output column came from (to sum explanations back to inputs).
        self.output_features: list[str] = list(numeric.columns) if numeric else []
        for block in categorical:
            self.output_features += [block.column] * block.width

    def _encode_few(self, records: Sequence[Record]) -> np.ndarray:
        """A few records in plain Python floats: the same IEEE double arithmetic as numpy, without the
        per-call overhead of building arrays column block by column block."""
        rows = []
        for record in records:
            row = [0.0] * self.width
            offset = 0
            if self.numeric is not None:
                block = self.numeric
                for j, name in enumerate(block.columns):
                    value = record[name]
                    value = block.fill_list[j] if value is None else float(value)
                    if block.mean_list is not None and block.scale_list is not None:
                        value = (value - block.mean_list[j]) / block.scale_list[j]
                    row[j] = value
                offset = len(block.columns)
            for cat in self.categorical:
                position = cat.index.get(record[cat.column], -1)
                if cat.ordinal:
                    row[offset] = float(position) if position >= 0 else math.nan
                elif position >= 0:
                    row[offset + position] = 1.0
                offset += cat.width
            rows.append(row)
        return np.array(rows, dtype="float64").reshape(len(records), self.width)

    def encode(self, records: Sequence[Record]) -> np.ndarray:
        """Every record must hold every feature; a missing value is ``None`` (as JSON ``null`` parses)."""
        n = len(records)
        if n <= FEW_RECORDS:
            return self._encode_few(records)
        cols = self.numeric.columns if self.numeric is not None else []
        # dtype float turns None into NaN, exactly like pd.to_numeric on the training frame
        if isinstance(records, ColumnBatch):
            values = np.column_stack([records.numeric[c] for c in cols]) if cols else np.empty((n, 0))
            positions = [_positions(block, records.categorical[block.column]) for block in self.categorical]
        else:
            if cols:
                row = itemgetter(*cols) if len(cols) > 1 else (lambda r, c=cols[0]: (r[c],))
                values = np.array([row(r) for r in records], dtype="float64").reshape(n, len(cols))
            else:
                values = np.empty((n, 0))
            positions = [
                np.array([block.index.get(r[block.column], -1) for r in records], dtype=np.intp).reshape(n)
                for block in self.categorical
            ]
        out = np.zeros((n, self.width), dtype="float64")
        if self.numeric is not None:
            missing = np.isnan(values)
            if missing.any():
                values = np.where(missing, self.numeric.fill, values)
            if self.numeric.mean is not None and self.numeric.scale is not None:
                values -= self.numeric.mean
                values /= self.numeric.scale
            out[:, : len(cols)] = values
        offset = len(cols)
        row_start = np.arange(n) * self.width
        flat = out.reshape(-1)
        for block, position in zip(self.categorical, positions, strict=True):
            known = position >= 0  # handle_unknown="ignore": an unseen category sets no column
            if block.ordinal:
                out[:, offset] = np.where(known, position, np.nan)
            else:
                flat[(row_start + offset + position)[known]] = 1.0
            offset += block.width
        return out

    def predict(self, records: Sequence[Record]) -> np.ndarray:
        return self.predict_encoded(self.encode(records))

    def predict_encoded(self, encoded: np.ndarray) -> np.ndarray:
        if self.trees is not None and len(encoded) <= TREES_MAX_ROWS:
            return self.trees.probabilities(encoded)
        return self._estimator_probabilities(encoded)

    def compile_trees(self, probe: Sequence[Record]) -> None:
        """Score few rows with the estimator's trees as numpy arrays (:mod:`mlops.core.serving.compiled_trees`), if
        they give the estimator's probabilities bit for bit on ``probe``."""
        try:
            trees = compile_estimator(self.estimator)
        except UnsupportedTrees:
            return
        if trees.matches(self._estimator_probabilities, self.encode(probe)):
            self.trees = trees

    def _estimator_probabilities(self, encoded: np.ndarray) -> np.ndarray:
        if self._booster is not None:
            return np.asarray(self._booster(encoded))
        return np.asarray(self.estimator.predict_proba(encoded)[:, 1])

    @cached_property
    def _booster(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """XGBoost's binary classifier: what its predict_proba computes for class 1, without the wrapper's
        per-call checks (a few hundred microseconds on one record)."""
        estimator = self.estimator
        if type(estimator).__name__ != "XGBClassifier" or estimator.objective != "binary:logistic":
            return None
        booster = estimator.get_booster()
        iteration_range = estimator._get_iteration_range(None)
        missing = estimator.missing
        threads = [0]  # the booster's nthread now: setting it makes XGBoost reconfigure (~0.25 ms)

        def predict(encoded: np.ndarray) -> np.ndarray:
            # Big batches use every core (results do not depend on the thread count); small ones one.
            wanted = (os.cpu_count() or 1) if len(encoded) >= BIG_BATCH else 1
            if threads[0] != wanted:
                booster.set_param({"nthread": wanted})
                threads[0] = wanted
            # The predictor caps OpenMP at one thread per worker (model_loading.load_model); lift it for this call.
            with threadpool_limits(limits=wanted, user_api="openmp") if wanted > 1 else nullcontext():
                return booster.inplace_predict(
                    encoded, iteration_range=iteration_range, predict_type="value", missing=missing
                )

        return predict


class PipelineScorer:
    """The fallback: the fitted pipeline itself on the normalised frame (slow on single records, exact)."""

    kind = "pipeline"

    def __init__(self, pipeline: Pipeline, dataset: Dataset) -> None:
        self.pipeline = pipeline
        self.dataset = dataset

    def predict(self, records: Sequence[Record]) -> np.ndarray:
        return np.asarray(self.pipeline.predict_proba(frame_from_records(records, self.dataset))[:, 1])


def compile_pipeline(pipeline: Pipeline) -> CompiledScorer:
    """Compile ``Pipeline([("preprocess", ColumnTransformer), ("model", estimator)])``."""
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        raise UnsupportedPipeline("expected a two-step Pipeline: preprocessing, then the model")
    pre, estimator = pipeline.steps[0][1], pipeline.steps[1][1]
    if not isinstance(pre, ColumnTransformer) or pre.sparse_output_:
        raise UnsupportedPipeline("the first step must be a ColumnTransformer with dense output")
    numeric: NumericBlock | None = None
    categorical: list[CategoricalBlock] = []
    for name, step, columns in pre.transformers_:
        if name == "remainder":
            if step != "drop" and len(columns):
                raise UnsupportedPipeline("the ColumnTransformer passes remainder columns through")
            continue
        if not len(columns):  # a table with no numbers or no categories: sklearn never fits that part
            continue
        if name == "num" and numeric is None and not categorical:
            numeric = _numeric_block(step, list(columns))
        elif name == "cat":
            categorical += _categorical_blocks(step, list(columns))
        else:
            raise UnsupportedPipeline(f"unexpected ColumnTransformer part {name!r}")
    scorer = CompiledScorer(numeric, categorical, estimator)
    if scorer.width != len(pre.get_feature_names_out()):
        raise UnsupportedPipeline("the compiled encoding does not have the ColumnTransformer's width")
    return scorer


def probe_records(columns: Mapping[str, list[Any]], rows: int = 64, seed: int = 0) -> list[dict[str, Any]]:
    """Synthetic records drawing each field from ``columns`` (values and ``None``), for the parity probe."""
    rng = np.random.default_rng(seed)
    return [{name: values[int(rng.integers(len(values)))] for name, values in columns.items()} for _ in range(rows)]


def schema_probe(schema: FeatureSchema, rows: int = 256) -> list[dict[str, Any]]:
    """Probe records from a model's feature schema: each number's bounds and median, each category, missing
    values where allowed, and a category never seen (what a served request may hold)."""
    columns: dict[str, list[Any]] = {}
    for name, num in schema.numerical.items():
        columns[name] = [num.minimum, num.maximum, num.median] + ([None] if num.nullable else [])
    for name, cat in schema.categorical.items():
        columns[name] = [*cat.categories, None, "__unseen__"]
    return probe_records(columns, rows=rows)


def max_difference(scorer: Scorer, pipeline: Pipeline, records: Sequence[Record], dataset: Dataset) -> float:
    expected = pipeline.predict_proba(frame_from_records(records, dataset))[:, 1]
    return float(np.max(np.abs(scorer.predict(records) - expected))) if len(records) else 0.0


def scorer_for(pipeline: Pipeline, dataset: Dataset, probe: Sequence[Record]) -> Scorer:
    """The compiled scorer when it compiles and matches the pipeline on ``probe``; else the pipeline."""
    try:
        compiled = compile_pipeline(pipeline)
    except UnsupportedPipeline:
        return PipelineScorer(pipeline, dataset)
    compiled.compile_trees(probe)
    few = probe[:FEW_RECORDS]  # the few-record paths (plain-Python encoding, compiled trees) checked too
    if max(max_difference(compiled, pipeline, p, dataset) for p in (probe, few)) > PARITY_TOLERANCE:
        return PipelineScorer(pipeline, dataset)
    return compiled


def decisions(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """The decision at the threshold, compared as evaluation.metrics compares (``proba >= threshold``)."""
    return np.asarray(probabilities >= threshold)


def frame_records(frame: pd.DataFrame, features: list[str]) -> list[dict[str, Any]]:
    """Rows of a frame as JSON-like records (missing cells as ``None``)."""
    sub = frame[features].astype(object)
    return sub.where(sub.notna(), None).to_dict("records")  # type: ignore[call-overload]
