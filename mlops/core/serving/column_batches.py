"""Column-oriented batches (MLflow's ``dataframe_split``): checked a column at a time with numpy and set
operations, by the same rules as the pydantic record types, and served to scoring as columns.

Only when this check refuses a batch do its rows go through pydantic, which then names every bad field.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from functools import cached_property
from typing import Any, overload

import numpy as np

from mlops.core.data.schema import FeatureSchema
from mlops.core.serving.record_types import FLOAT32_MAX


class ColumnBatch(Sequence[dict[str, Any]]):
    """Validated records held as columns: numeric ones as float64 arrays (NaN where missing), category
    ones as object arrays (``None`` where missing). Indexing or iterating builds record dicts (missing as
    ``None``), so it goes wherever a list of records goes; the scorer reads the columns directly."""

    def __init__(self, numeric: dict[str, np.ndarray], categorical: dict[str, np.ndarray], order: list[str]) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.order = order  # the features, in the schema's order
        lengths = [len(v) for v in numeric.values()] + [len(v) for v in categorical.values()]
        self._length = lengths[0] if lengths else 0

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._length))]
        if not -self._length <= index < self._length:
            raise IndexError(index)
        return dict(zip(self.order, (column[index] for column in self._columns), strict=True))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (dict(zip(self.order, row, strict=True)) for row in zip(*self._columns, strict=True))

    @cached_property
    def _columns(self) -> list[list[Any]]:
        out = []
        for name in self.order:
            if name in self.numeric:
                values = self.numeric[name]
                column: list[Any] = values.tolist()
                for i in np.flatnonzero(np.isnan(values)).tolist():
                    column[i] = None
                out.append(column)
            else:
                out.append(self.categorical[name].tolist())
        return out


class ColumnCheck:
    """Every cell of a column-oriented batch checked against ``schema``; the batch, or None if any cell fails."""

    def __init__(self, schema: FeatureSchema, open_categories: Collection[str], max_text_length: int) -> None:
        self.schema = schema
        self.open_categories = set(open_categories)
        self.max_text_length = max_text_length
        self._allowed = {name: frozenset(cat.categories) for name, cat in schema.categorical.items()}

    def batch_if_valid(self, columns: list[str], data: list[Any]) -> ColumnBatch | None:
        """The batch if every cell passes, else ``None``."""
        try:
            table = np.array(data, dtype=object)
        except ValueError:  # ragged rows
            return None
        if table.ndim != 2 or table.shape[1] != len(columns):
            return None
        numeric: dict[str, np.ndarray] = {}
        categorical: dict[str, np.ndarray] = {}
        for name in self.schema.features:
            cells = table[:, columns.index(name)]
            if name in self.schema.numerical:
                values = self._numeric_column(name, cells)
                if values is None:
                    return None
                numeric[name] = values
            else:
                labels = self._category_column(name, cells)
                if labels is None:
                    return None
                categorical[name] = labels
        return ColumnBatch(numeric, categorical, list(self.schema.features))

    def _numeric_column(self, name: str, cells: np.ndarray) -> np.ndarray | None:
        kinds = set(map(type, cells.tolist()))  # bool is not int here: True is refused, as pydantic's strict float does
        if not kinds <= {int, float, type(None)} or (type(None) in kinds and not self.schema.numerical[name].nullable):
            return None
        try:
            # None -> NaN (JSON has no NaN: pydantic-core reads a NaN token as a float, refused below)
            values = cells.astype(np.float64)
        except OverflowError:  # an integer beyond float64
            return None
        present = values[cells != None] if type(None) in kinds else values  # noqa: E711 (element-wise)
        if not (np.isfinite(present).all() and (np.abs(present) <= FLOAT32_MAX).all()):
            return None
        return values

    def _category_column(self, name: str, cells: np.ndarray) -> np.ndarray | None:
        spec = self.schema.categorical[name]
        try:
            seen = set(cells.tolist())
        except TypeError:  # a list or an object in a cell
            return None
        if None in seen:
            if not spec.nullable:
                return None
            seen.discard(None)
        if not all(type(v) is str for v in seen):
            return None
        if name in self.open_categories:
            if any("\x00" in v or len(v) > self.max_text_length for v in seen):
                return None
        elif not seen <= self._allowed[name]:
            return None
        return cells
