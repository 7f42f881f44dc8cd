"""The predictor's client errors: :class:`RequestError` (an HTTP status, a message and one entry per bad field),
and pydantic's validation errors told as those entries, each naming the field, the record and the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import ErrorDetails

from mlops.core.data.schema import FeatureSchema
from mlops.core.serving.api_bodies import ErrorBody, FieldError, dump
from mlops.core.serving.record_types import FLOAT32_MAX

MAX_LISTED_ERRORS = 100  # a 100k-row batch of bad rows would otherwise answer with millions of errors


@dataclass
class RequestError(Exception):
    """A client error: HTTP ``status``, a message, and per-field problems (``field``, ``reason``, ``record``)."""

    status: int
    message: str
    errors: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        """The :class:`~mlops.core.serving.api_bodies.ErrorBody` sent: at most MAX_LISTED_ERRORS entries."""
        listed = [FieldError.model_validate(e) for e in self.errors[:MAX_LISTED_ERRORS]]
        count = len(self.errors) if len(self.errors) > len(listed) else None
        return dump(ErrorBody(error=self.message, errors=listed, error_count=count))


@dataclass(frozen=True)
class FieldErrors:
    """Tells pydantic's errors for records of ``schema`` as the API's field errors."""

    schema: FeatureSchema
    max_rows: int
    max_text_length: int

    def request_error(self, errors: list[ErrorDetails], many: bool) -> RequestError:
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
