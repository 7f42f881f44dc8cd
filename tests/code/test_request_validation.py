"""Request validation on its own (no server): what a JSON client sends for a table's flags and bounds."""

from __future__ import annotations

import json

import pytest

from mlops.core.data.schema import CategoricalFeature, FeatureSchema, NumericalFeature
from mlops.core.serving.request_errors import RequestError
from mlops.core.serving.request_validation import RecordValidator

SCHEMA = FeatureSchema(
    numerical={"visits": NumericalFeature(0, 40, 3, nullable=False, integer=True)},
    categorical={
        "is_member": CategoricalFeature(["0", "1"], nullable=False),
        "rating": CategoricalFeature(["0.5", "1", "2"], nullable=True),
    },
)


@pytest.fixture(scope="module")
def validator() -> RecordValidator:
    return RecordValidator(SCHEMA, max_rows=100)


def reasons(error: RequestError) -> dict[str, str]:
    return {e["field"]: e["reason"] for e in error.errors}


def test_a_number_equal_to_an_allowed_category_is_that_category(validator: RecordValidator) -> None:
    """0/1 flags come from JSON clients as numbers (#12, 3): accepted as the category they equal."""
    records = validator.parse_json(json.dumps({"visits": 4, "is_member": 1, "rating": 0.5}).encode())
    assert records == [{"visits": 4.0, "is_member": "1", "rating": "0.5"}]
    batch = [{"visits": 1, "is_member": 0, "rating": None}, {"visits": 2, "is_member": "1", "rating": 2}]
    assert [r["is_member"] for r in validator.parse_json(json.dumps(batch).encode())] == ["0", "1"]
    split = {"dataframe_split": {"columns": ["visits", "is_member", "rating"], "data": [[3, 1, 2.0], [4, 0, 1]]}}
    parsed = validator.parse_json(json.dumps(split).encode())
    assert [(r["is_member"], r["rating"]) for r in parsed] == [("1", "2"), ("0", "1")]


@pytest.mark.parametrize("value", [2, 1.5, True, -0.0001])
def test_a_number_that_is_no_category_is_still_refused(validator: RecordValidator, value: object) -> None:
    with pytest.raises(RequestError) as caught:
        validator.parse_json(json.dumps({"visits": 4, "is_member": value, "rating": "1"}).encode())
    assert caught.value.status == 422
    assert "not an allowed category" in reasons(caught.value)["is_member"]
