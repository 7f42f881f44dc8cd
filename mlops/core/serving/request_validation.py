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
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError
from pydantic_core import from_json

from mlops.core.data.schema import FeatureSchema
from mlops.core.serving import record_count
from mlops.core.serving.column_batches import ColumnCheck
from mlops.core.serving.record_types import DEFAULT_MAX_TEXT, record_type
from mlops.core.serving.request_errors import FieldErrors, RequestError

UTF8_BOM = b"\xef\xbb\xbf"
SPLIT_KEY = "dataframe_split"  # MLflow's name for the column-oriented JSON body
SPLIT_START = re.compile(rb'\s*\{\s*"' + SPLIT_KEY.encode() + rb'"')  # a body whose first key is it


@dataclass(frozen=True)
class ParsedCsv:
    records: list[dict[str, Any]]
    header: list[str]
    rows: list[list[str]]  # the cells as sent, echoed in the CSV answer


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
        self.columns = ColumnCheck(schema, self.open_categories, max_text_length)
        self.errors = FieldErrors(schema, max_rows, max_text_length)

    def record_json_schema(self) -> dict[str, Any]:
        return self.one.json_schema()

    def parse_json(self, body: bytes, single_only: bool = False) -> Sequence[dict[str, Any]]:
        """One JSON object, a non-empty array of them, or a ``dataframe_split`` -> records (raises
        :class:`RequestError`). A UTF-8 byte order mark is skipped, as in CSV bodies."""
        body = body.removeprefix(UTF8_BOM)
        start = body.lstrip()[:1]
        features = len(self.schema.features)
        if start == b"[" and not single_only:
            self._refuse_too_many(body, record_count.array_items, ())
            records = self._validate(self.many, body, many=True)
            refuse_duplicate_keys(body, len(records) * features)
            return records
        if not single_only and SPLIT_START.match(body):  # matched in place: a big body is not copied
            self._refuse_too_many(body, record_count.split_rows, (SPLIT_KEY, "data"))
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

    def _too_many(self, records: int | str) -> RequestError:
        return RequestError(
            413, f"{records} records is more than {self.max_rows} records in one request (serving.max_batch_rows)"
        )

    def _refuse_too_many(self, body: bytes, count: Any, path: tuple[str, ...]) -> None:
        """Count the records before validating any (refused in milliseconds, not after validating them all).
        Each record takes at least 3 bytes (``{},``), so a shorter body cannot hold too many."""
        if len(body) < 3 * self.max_rows:
            return
        records = count(body)
        if records is None:
            records = record_count.parsed_length(body, path)
        if records is not None and records > self.max_rows:
            raise self._too_many(records)

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
            raise self._too_many(len(data))
        checked = self.columns.batch_if_valid(columns, data)
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
            raise self.errors.request_error(exc.errors(include_url=False, include_context=True), many=True) from None

    def _validate(self, adapter: TypeAdapter[Any], body: bytes, many: bool) -> Any:
        try:
            return adapter.validate_json(body)
        except ValidationError as exc:
            raise self.errors.request_error(exc.errors(include_url=False, include_context=True), many) from None

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
            raise self.errors.request_error(exc.errors(include_url=False, include_context=True), many=True) from None
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
