"""Request validation for the predictor: pydantic types built from the model's feature schema.

Every field of the schema is required; numbers must be finite JSON numbers, categories one of those seen
in training; ``null`` (missing) is allowed where training had missing values; unknown fields are
rejected. A category column can be declared *open* (the dataset's split column: its values outside the
training months are expected by design and scored like any unseen category, by the model's
``handle_unknown="ignore"``). Problems become a :class:`RequestError` naming every bad field and why.
JSON is parsed and validated in one pass by pydantic-core; CSV cells are converted, then validated the same.

Big batches can come column-oriented, in MLflow's ``{"dataframe_split": {"columns": [...], "data": [[...],
...]}}`` (so an MLflow client works unchanged, and the body is less than half the size of records). Those
are checked a column at a time with numpy and set operations (:class:`ColumnBatch`), the same rules as
the pydantic types; only when that check refuses a batch do the rows go through pydantic, which then
names every bad field (or accepts the batch, if the column check was stricter than it).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Literal, Optional, overload

import numpy as np
from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails, from_json
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from mlops.core.data.schema import FeatureSchema

UTF8_BOM = b"\xef\xbb\xbf"
SPLIT_KEY = "dataframe_split"  # MLflow's name for the column-oriented JSON body
SPLIT_START = re.compile(rb'\s*\{\s*"' + SPLIT_KEY.encode() + rb'"')  # a body whose first key is it
MAX_LISTED_ERRORS = 100  # a 100k-row batch of bad rows would otherwise answer with millions of errors
# Tree boosters compute in 32-bit floats: a larger magnitude would become infinite inside the model.
FLOAT32_MAX = float(np.finfo(np.float32).max)
Number = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
# Free text: any but NUL (PostgreSQL cannot store it in the prediction log's JSON: the row would never be
# written), up to ``serving.max_text_length`` characters (the log stores what it scores).
NO_NUL = r"^[^\x00]*$"
DEFAULT_MAX_TEXT = 256


def text_type(max_length: int) -> Any:
    return Annotated[str, Field(strict=True, pattern=NO_NUL, max_length=max_length)]


@dataclass
class RequestError(Exception):
    """A client error: HTTP ``status``, a message, and per-field problems (``field``, ``reason``, ``record``)."""

    status: int
    message: str
    errors: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        listed = self.errors[:MAX_LISTED_ERRORS]
        out: dict[str, Any] = {"error": self.message, "errors": listed}
        if len(self.errors) > len(listed):
            out["error_count"] = len(self.errors)
        return out


@dataclass(frozen=True)
class ParsedCsv:
    records: list[dict[str, Any]]
    header: list[str]
    rows: list[list[str]]  # the cells as sent, echoed in the CSV answer


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


def refuse_duplicate_keys(body: bytes, keys: int) -> None:
    """Refuse a JSON object that names a key twice (parsers keep the last; we would score what was not meant).

    A body that validated has exactly ``keys`` keys unless one repeats. Every key ends in ``":`` in the usual
    spelling, so when that count matches nothing repeats and nothing is parsed again; otherwise (other
    spacing, or ``":`` inside a text) the standard parser reads the body once more and names the key.
    """
    if body.count(b'":') == keys:
        return

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in pairs]
        if len(set(names)) != len(names):
            twice = next(name for name in names if names.count(name) > 1)
            raise RequestError(
                422, f"the key {twice!r} appears twice in one object", [{"field": twice, "reason": "duplicate key"}]
            )
        return dict(pairs)

    json.loads(body, object_pairs_hook=unique)


def number_as_category(categories: Sequence[str]) -> BeforeValidator:
    """A JSON number equal to an allowed category is that category (a 0/1 flag sent as ``0``, not ``"0"``);
    any other number stays refused, with the allowed categories named."""
    allowed = frozenset(categories)

    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            text = str(value)
        elif isinstance(value, float) and math.isfinite(value):
            text = str(int(value)) if value.is_integer() else repr(value)
        else:
            return value
        return text if text in allowed else value

    return BeforeValidator(convert)


def record_type(
    schema: FeatureSchema, open_categories: Collection[str] = (), max_text_length: int = DEFAULT_MAX_TEXT
) -> type:
    """A TypedDict of one record: every feature required, no other key allowed."""
    free_text = text_type(max_text_length)
    fields: dict[str, Any] = {}
    for name, num in schema.numerical.items():
        fields[name] = Optional[Number] if num.nullable else Number  # noqa: UP045 (runtime type expression)
    for name, cat in schema.categorical.items():
        allowed: Any = Literal[tuple(cat.categories)]
        kind: Any = free_text if name in open_categories else Annotated[allowed, number_as_category(cat.categories)]
        fields[name] = Optional[kind] if cat.nullable else kind  # noqa: UP045
    record = TypedDict("Record", fields)  # type: ignore[misc]
    record.__pydantic_config__ = ConfigDict(extra="forbid", title="Record")  # type: ignore[attr-defined]
    return record


class RecordValidator:
    """Parses and validates request bodies (JSON or CSV) into records ready for scoring."""

    def __init__(
        self,
        schema: FeatureSchema,
        max_rows: int,
        open_categories: Collection[str] = (),
        max_text_length: int = DEFAULT_MAX_TEXT,
    ) -> None:
        self.schema = schema
        self.max_rows = max_rows
        self.max_text_length = max_text_length
        self.open_categories = set(open_categories) & set(schema.categorical)
        record = record_type(schema, self.open_categories, max_text_length)
        self.one: TypeAdapter[Any] = TypeAdapter(record)
        records: Any = Annotated[list[record], Field(min_length=1, max_length=max_rows)]  # type: ignore[valid-type]
        self.many: TypeAdapter[Any] = TypeAdapter(records)
        self._allowed = {name: frozenset(cat.categories) for name, cat in schema.categorical.items()}

    def record_json_schema(self) -> dict[str, Any]:
        return self.one.json_schema()

    def parse_json(self, body: bytes, single_only: bool = False) -> Sequence[dict[str, Any]]:
        """One JSON object, a non-empty array of them, or a ``dataframe_split`` -> records (raises
        :class:`RequestError`). A UTF-8 byte order mark is skipped, as in CSV bodies."""
        body = body.removeprefix(UTF8_BOM)
        start = body.lstrip()[:1]
        features = len(self.schema.features)
        if start == b"[" and not single_only:
            records = self._validate(self.many, body, many=True)
            refuse_duplicate_keys(body, len(records) * features)
            return records
        if not single_only and SPLIT_START.match(body):  # matched in place: a big body is not copied
            parsed = self._parse(body)
            if isinstance(parsed, dict) and parsed.keys() == {SPLIT_KEY}:
                refuse_duplicate_keys(body, 3)  # dataframe_split, columns, data
                return self.parse_split(parsed[SPLIT_KEY])
        if start == b"{":
            record = self._validate(self.one, body, many=False)
            refuse_duplicate_keys(body, features)
            return [record]
        self._parse(body)
        wanted = "one JSON object (a record)" if single_only else "a JSON object (a record) or an array of them"
        raise RequestError(422, f"the body must be {wanted}", [{"field": "(body)", "reason": f"expected {wanted}"}])

    @staticmethod
    def _parse(body: bytes) -> Any:
        # pydantic-core's parser: a recursion limit instead of Python's RecursionError
        try:
            return from_json(body)
        except ValueError as exc:
            raise RequestError(400, f"the body is not valid JSON: {exc}") from None

    def parse_split(self, split: Any) -> Sequence[dict[str, Any]]:
        """``{"columns": [names], "data": [[cells], ...]}`` -> records, checked a column at a time."""
        where = SPLIT_KEY
        if not isinstance(split, dict) or set(split) != {"columns", "data"}:
            raise RequestError(
                422,
                f"{where} must be an object with exactly the keys 'columns' and 'data'",
                [{"field": where, "reason": "expected {'columns': [...], 'data': [[...], ...]}"}],
            )
        columns, data = split["columns"], split["data"]
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise RequestError(
                422,
                f"{where}.columns must be a list of feature names",
                [{"field": f"{where}.columns", "reason": "expected a list of strings"}],
            )
        problems = self._header_problems(columns)
        if problems:
            raise RequestError(422, f"{where}.columns do not match the model's features", problems)
        if not isinstance(data, list) or not data:
            raise RequestError(
                422,
                f"{where}.data must be a non-empty list of rows",
                [{"field": f"{where}.data", "reason": "at least one row"}],
            )
        if len(data) > self.max_rows:
            raise RequestError(413, f"more than {self.max_rows} records in one request")
        checked = self._columns_if_valid(columns, data)
        if checked is not None:
            return checked
        width_errors = [
            {"field": "(row)", "record": i, "reason": f"expected a list of {len(columns)} cells, one per column"}
            for i, row in enumerate(data)
            if not isinstance(row, list) or len(row) != len(columns)
        ]
        if width_errors:
            raise RequestError(422, f"some {where}.data rows do not match its columns", width_errors)
        try:  # refused by the column check: pydantic names every problem (or accepts what it was stricter on)
            return self.many.validate_python([dict(zip(columns, row, strict=True)) for row in data])
        except ValidationError as exc:
            raise self._request_error(exc.errors(include_url=False, include_context=True), many=True) from None

    def _columns_if_valid(self, columns: list[str], data: list[Any]) -> ColumnBatch | None:
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

    def _validate(self, adapter: TypeAdapter[Any], body: bytes, many: bool) -> Any:
        try:
            return adapter.validate_json(body)
        except ValidationError as exc:
            raise self._request_error(exc.errors(include_url=False, include_context=True), many) from None

    def parse_csv(self, body: bytes) -> ParsedCsv:
        """A CSV with a header row naming the features; an empty cell is a missing value."""
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise RequestError(400, f"the CSV is not UTF-8 text: {exc}") from None
        try:
            table = list(csv.reader(io.StringIO(text, newline="")))
        except csv.Error as exc:
            raise RequestError(400, f"the body is not valid CSV: {exc}") from None
        if not table or not any(cell.strip() for cell in table[0]):
            raise RequestError(422, "the CSV has no header row", [{"field": "(header)", "reason": "missing"}])
        header, rows = [cell.strip() for cell in table[0]], [row for row in table[1:] if row]
        problems = self._header_problems(header)
        if problems:
            raise RequestError(422, "the CSV header does not match the model's features", problems)
        if not rows:
            raise RequestError(422, "the CSV has no data rows", [{"field": "(rows)", "reason": "at least one row"}])
        if len(rows) > self.max_rows:
            raise RequestError(413, f"{len(rows)} rows is over the limit of {self.max_rows} per request")
        width_errors = [
            {"field": "(row)", "record": i, "reason": f"has {len(row)} cells, the header has {len(header)}"}
            for i, row in enumerate(rows)
            if len(row) != len(header)
        ]
        if width_errors:
            raise RequestError(422, "some CSV rows do not match the header", width_errors)
        numeric = set(self.schema.numerical)
        converters = [_csv_number if name in numeric else _csv_text for name in header]
        raw = [
            dict(zip(header, (conv(cell) for conv, cell in zip(converters, row, strict=True)), strict=True))
            for row in rows
        ]
        try:
            records = self.many.validate_python(raw)
        except ValidationError as exc:
            raise self._request_error(exc.errors(include_url=False, include_context=True), many=True) from None
        return ParsedCsv(records, header, rows)

    def _header_problems(self, header: list[str]) -> list[dict[str, Any]]:
        features = self.schema.features
        problems = [{"field": name, "reason": "required column is missing"} for name in features if name not in header]
        problems += [
            {"field": name, "reason": "unknown column (not a feature of the model)"}
            for name in header
            if name not in features
        ]
        problems += [
            {"field": name, "reason": "column appears more than once"}
            for name in sorted({n for n in header if header.count(n) > 1})
        ]
        return problems

    def _request_error(self, errors: list[ErrorDetails], many: bool) -> RequestError:
        if any(e["type"] == "json_invalid" for e in errors):
            reason = next(e for e in errors if e["type"] == "json_invalid")["msg"]
            return RequestError(400, f"the body is not valid JSON: {reason}")
        if any(e["type"] == "too_long" and len(e["loc"]) == 0 for e in errors):
            return RequestError(413, f"more than {self.max_rows} records in one request")
        problems = [self._problem(e, many) for e in errors]
        return RequestError(422, "the request does not match the model's feature schema", problems)

    def _problem(self, error: ErrorDetails, many: bool) -> dict[str, Any]:
        loc = list(error["loc"])
        out: dict[str, Any] = {}
        if many and loc and isinstance(loc[0], int):
            out["record"] = loc.pop(0)
        name = str(loc[0]) if loc else ("(body)" if not many or "record" not in out else "(record)")
        out["field"] = name
        out["reason"] = self._reason(name, error)
        return out

    def _reason(self, name: str, error: ErrorDetails) -> str:
        kind, value = error["type"], error.get("input")
        if kind == "missing":
            return "required field is missing"
        if kind == "extra_forbidden":
            return "unknown field (not a feature of the model)"
        if kind == "too_short":
            return "at least one record is required"
        if kind in ("dict_type", "model_type", "typed_dict_type"):
            return "expected a JSON object (a record)"
        if value is None:
            return "must not be missing (null): training had no missing values in this field"
        if kind == "literal_error":
            allowed = self.schema.categorical[name].categories
            return f"{_shown(value)} is not an allowed category; allowed: {allowed}"
        if kind == "string_pattern_mismatch":
            return "must not contain NUL characters"
        if kind == "string_too_long":
            return f"at most {self.max_text_length} characters (serving.max_text_length), got {len(str(value)):,}"
        if kind == "finite_number":
            return "must be a finite number"
        if kind in ("greater_than_equal", "less_than_equal"):
            return f"must be between {-FLOAT32_MAX:.4g} and {FLOAT32_MAX:.4g} (the model computes in 32-bit floats)"
        if name in self.schema.numerical:
            return f"expected a number, got {_shown(value)}"
        if name in self.schema.categorical:
            return f"expected a string (a category), got {_shown(value)}"
        return str(error["msg"])


def _shown(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool) else type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _csv_number(cell: str) -> Any:
    cell = cell.strip()
    if not cell:
        return None
    try:
        value = float(cell)
    except ValueError:
        return cell  # left as text: validation names the field and the value
    return value if math.isfinite(value) else cell


def _csv_text(cell: str) -> str | None:
    return cell if cell.strip() else None
