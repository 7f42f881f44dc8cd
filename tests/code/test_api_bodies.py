"""The API's response bodies are defined once: the app's fast builders, the errors and the OpenAPI document agree."""

from __future__ import annotations

import json
import re

import pytest

from mlops.core import config
from mlops.core.serving import api_bodies, openapi
from mlops.core.serving.request_errors import MAX_LISTED_ERRORS, RequestError


def test_the_fast_predictions_answer_is_a_valid_predictions_body() -> None:
    answer = api_bodies.predictions_body(
        request_id="r1",
        model_name="m",
        model_version="3",
        threshold=0.4,
        probabilities=[0.1, 0.9],
        decisions=[False, True],
    )
    parsed = api_bodies.Predictions.model_validate(answer)
    assert [(p.probability, p.decision) for p in parsed.predictions] == [(0.1, False), (0.9, True)]
    assert api_bodies.dump(parsed) == answer  # the same keys and values as building the models would give


def test_a_request_error_answers_an_error_body_listing_at_most_the_limit() -> None:
    errors = [{"field": "age", "reason": "expected a number", "record": i} for i in range(MAX_LISTED_ERRORS + 5)]
    body = RequestError(422, "bad records", errors).body()
    parsed = api_bodies.ErrorBody.model_validate(body)
    assert len(parsed.errors) == MAX_LISTED_ERRORS and parsed.error_count == MAX_LISTED_ERRORS + 5
    assert "error_count" not in RequestError(400, "not JSON").body()
    assert RequestError(400, "not JSON").body() == {"error": "not JSON", "errors": []}


def test_a_field_error_without_a_record_leaves_the_key_out() -> None:
    body = RequestError(422, "bad", [{"field": "job", "reason": "unknown"}]).body()
    assert body["errors"] == [{"field": "job", "reason": "unknown"}]


@pytest.mark.parametrize("body", api_bodies.BODIES, ids=lambda b: b.__name__)
def test_the_openapi_document_publishes_every_body_schema(body: type[api_bodies.Body]) -> None:
    settings = config.load(environ={"MLOPS_ROOT": str(config.PACKAGE_ROOT)})
    schemas = openapi.document(None, None, settings)["components"]["schemas"]
    published = schemas[body.__name__]
    assert set(published["properties"]) == set(body.model_fields)
    assert set(published.get("required", [])) == {n for n, f in body.model_fields.items() if f.is_required()}
    refs = re.findall(r"#/components/schemas/(\w+)", json.dumps(schemas))
    assert refs == [] or set(refs) <= set(schemas)  # every nested body (Prediction, FieldError) is there too
