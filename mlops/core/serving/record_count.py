"""Counting a JSON body's records before it is parsed, so an oversized batch is refused in milliseconds.

Validating a body record by record and only then finding it holds more than ``serving.max_batch_rows``
records took 9.6 s for 100,001 records. :func:`items_at_depth` counts the objects (or arrays) that open at
one nesting depth in a single vectorised pass over the bytes: the structural characters ``[]{}`` outside
strings (a string's quotes are found with numpy; a body with backslashes, whose escaped quotes that pass
cannot tell apart, is parsed by pydantic-core's parser instead, still without validating anything).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic_core import from_json

QUOTE, BACKSLASH = 34, 92
OPEN_OBJECT, CLOSE_OBJECT, OPEN_ARRAY, CLOSE_ARRAY = 123, 125, 91, 93


def items_at_depth(body: bytes, opener: bytes, depth: int) -> int | None:
    """How many ``opener`` (``b"{"`` or ``b"["``) open at nesting ``depth`` (1 = inside the top-level value);
    None when the body is not JSON the count can be trusted for (the full parse then reports it)."""
    if BACKSLASH in body:
        return None
    data = np.frombuffer(body, dtype=np.uint8)
    quotes = np.flatnonzero(data == QUOTE)
    structural = np.flatnonzero(
        (data == OPEN_OBJECT) | (data == CLOSE_OBJECT) | (data == OPEN_ARRAY) | (data == CLOSE_ARRAY)
    )
    outside = np.searchsorted(quotes, structural) % 2 == 0  # an even number of quotes before: not in a string
    chars = data[structural[outside]]
    step = np.where((chars == OPEN_OBJECT) | (chars == OPEN_ARRAY), 1, -1)
    before = np.cumsum(step) - step  # depth before each character
    return int(np.count_nonzero((chars == opener[0]) & (before == depth)))


def split_rows(body: bytes) -> int | None:
    """Rows of a ``{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`` body (arrays at depth 3)."""
    return items_at_depth(body, b"[", 3)


def array_items(body: bytes) -> int | None:
    """Records of a ``[{...}, ...]`` body."""
    return items_at_depth(body, b"{", 1)


def parsed_length(body: bytes, path: tuple[str, ...] = ()) -> int | None:
    """The fallback: parse (no validation) and take the length of the list at ``path``."""
    try:
        value: Any = from_json(body)
        for key in path:
            value = value[key]
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return len(value) if isinstance(value, list) else None
