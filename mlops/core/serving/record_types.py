"""The pydantic type of one record, built from a model's feature schema: every feature required and no other key,
numbers finite (and within 32-bit floats), categories one of those seen in training (or free text for an open
category), ``null`` only where training had missing values.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Annotated, Any, Literal, Optional

import numpy as np
from pydantic import BeforeValidator, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from mlops.core.data.schema import FeatureSchema

# Tree boosters compute in 32-bit floats: a larger magnitude would become infinite inside the model.
FLOAT32_MAX = float(np.finfo(np.float32).max)
Number = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
# Free text: any but NUL (PostgreSQL cannot store it in the prediction log's JSON: the row would never be
# written), up to ``serving.max_text_length`` characters (the log stores what it scores).
NO_NUL = r"^[^\x00]*$"
DEFAULT_MAX_TEXT = 256


def text_type(max_length: int) -> Any:
    return Annotated[str, Field(strict=True, pattern=NO_NUL, max_length=max_length)]


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
