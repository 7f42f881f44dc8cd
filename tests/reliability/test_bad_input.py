"""Bad input against the running predictor (gunicorn): every case answers 4xx with a JSON error naming the
field and the reason, never a 5xx; schemathesis fuzzes every operation of its own /openapi.json."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from mlops.testing.drills import fuzz, logged_rows

from .conftest import Predictor

pytestmark = [pytest.mark.postgres]
JSON = {"Content-Type": "application/json"}
FUZZ_CASES = 200  # the soak (benchmarks/soak.py) sends 1,000+


@pytest.fixture(scope="module")
def monitoring_db(throwaway_postgres) -> str:  # type: ignore[no-untyped-def]
    return str(throwaway_postgres.database("badinput"))


@pytest.fixture(scope="module")
def predictor(start_predictor: Callable[..., Predictor], small_payload: Path, monitoring_db: str) -> Predictor:
    # no reload token configured: /reload is disabled (test_security.py runs one with a token)
    env = {"MLOPS_STORES__MONITORING_DB": monitoring_db, "MLOPS_SECRETS__RELOAD_TOKEN": ""}
    return start_predictor(small_payload, env=env)


@pytest.fixture(scope="module")
def record(sample_records: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(sample_records[0])


def raw(record: dict[str, Any], field: str, token: str) -> bytes:
    """The record as JSON text with ``field``'s value replaced by a raw token (NaN, 1e400, ...)."""
    return json.dumps({**record, field: "__TOKEN__"}).replace('"__TOKEN__"', token).encode()


def assert_names(response: requests.Response, status: int, field: str, reason: str) -> None:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    named = [e for e in body["errors"] if e["field"] == field]
    assert named, f"no error names {field!r}: {body}"
    assert any(reason in e["reason"] for e in named), f"{field!r}: {named} does not say {reason!r}"


FIELD_CASES = [
    # (id, field, JSON value or raw token, expected reason)
    ("text-in-number", "age", '"forty"', "expected a number"),
    ("bool-in-number", "age", "true", "expected a number"),
    ("object-in-number", "balance", '{"value": 1}', "expected a number"),
    ("number-in-category", "job", "5", "not an allowed category"),
    ("list-in-category", "marital", '["single"]', "allowed"),
    ("nan-token", "age", "NaN", "finite"),
    ("infinity-token", "balance", "Infinity", "finite"),
    ("minus-infinity-token", "balance", "-Infinity", "finite"),
    ("nan-string", "balance", '"NaN"', "expected a number"),
    ("infinity-string", "age", '"Infinity"', "expected a number"),
    ("overflowing-float", "balance", "1e400", "finite"),
    ("huge-integer", "balance", "9" * 400, "finite"),
    ("huge-float", "campaign", "1e300", "must be between"),
    ("unknown-category", "job", '"astronaut"', "not an allowed category"),
    ("nul-in-open-category", "month", '"ma\\u0000y"', "NUL"),
    ("null-where-never-missing", "age", "null", "must not be missing"),
]


@pytest.mark.parametrize(("field", "token", "reason"), [c[1:] for c in FIELD_CASES], ids=[c[0] for c in FIELD_CASES])
@pytest.mark.parametrize("path", ["/predict", "/explain"])
def test_a_bad_value_is_named_with_its_reason(
    predictor: Predictor, record: dict[str, Any], path: str, field: str, token: str, reason: str
) -> None:
    assert_names(predictor.post(path, data=raw(record, field, token), headers=JSON), 422, field, reason)


def test_a_bad_record_in_a_batch_is_named_by_index(predictor: Predictor, sample_records: list[dict[str, Any]]) -> None:
    batch = [dict(r) for r in sample_records[:5]]
    batch[3]["education"] = "doctorate-of-everything"
    response = predictor.post("/predict", json=batch)
    assert_names(response, 422, "education", "not an allowed category")
    assert [e["record"] for e in response.json()["errors"]] == [3]


def test_missing_and_unknown_fields_are_named(predictor: Predictor, record: dict[str, Any]) -> None:
    without = {k: v for k, v in record.items() if k != "pdays"}
    assert_names(predictor.post("/predict", json=without), 422, "pdays", "required field is missing")
    assert_names(predictor.post("/predict", json={**record, "duration": 120}), 422, "duration", "unknown field")


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"", 400, "not valid JSON"),
        (b"   ", 400, "not valid JSON"),
        (b"hello, predictor", 400, "not valid JSON"),
        (b'{"age": 41,', 400, "not valid JSON"),
        (b"\xff\xfe\x00garbage", 400, "not valid JSON"),
        (b"null", 422, "must be"),
        (b"42", 422, "must be"),
        (b"[]", 422, "one"),  # /predict: at least one record; /explain: one JSON object
        (b"[" * 100_000 + b"]" * 100_000, 400, "recursion limit"),
        (b'{"age":' * 100_000 + b"1" + b"}" * 100_000, 400, "recursion limit"),
        (b'{"age": [' * 50_000 + b"]}" * 50_000, 400, "recursion limit"),
    ],
    ids=[
        "empty",
        "blank",
        "not-json",
        "truncated",
        "not-utf8",
        "null",
        "number",
        "empty-list",
        "nested-lists",
        "nested-objects",
        "nested-mixed",
    ],
)
def test_malformed_bodies_are_client_errors(predictor: Predictor, body: bytes, status: int, says: str) -> None:
    for path in ("/predict", "/explain"):
        response = predictor.post(path, data=body, headers=JSON)
        assert response.status_code == status, (path, response.status_code, response.text[:300])
        answer = response.json()
        message = answer["error"] + " " + " ".join(e["reason"] for e in answer["errors"])
        assert says in message, (path, answer)


def test_a_wrong_content_type_is_415(predictor: Predictor, record: dict[str, Any]) -> None:
    for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}, {}):
        response = predictor.post("/predict", data=json.dumps(record).encode(), headers=headers)
        assert response.status_code == 415 and "Content-Type" in response.json()["error"]


def test_a_50_mb_body_and_one_over_the_limit_are_413(
    predictor: Predictor,
    record: dict[str, Any],
    settings,  # type: ignore[no-untyped-def]
) -> None:
    # 50 MB: one record more than serving.max_batch_rows, padded with whitespace (cheap to parse)
    rows = b"[" + b",".join([json.dumps(record).encode()] * (settings.serving.max_batch_rows + 1)) + b"]"
    fifty_mb = rows + b" " * (50_000_000 - len(rows))
    response = predictor.post("/predict", data=fifty_mb, headers=JSON)
    assert response.status_code == 413 and "records" in response.json()["error"]
    over = b" " * (settings.serving.max_body_bytes + 1)  # refused from Content-Length, before it is parsed
    response = predictor.post("/predict", data=over, headers=JSON)
    assert response.status_code == 413 and response.json()["error"]
    assert predictor.post("/predict", json=[]).status_code == 422  # the worker still answers


def test_unknown_paths_and_methods_answer_json(predictor: Predictor) -> None:
    assert predictor.get("/nowhere").status_code == 404
    response = predictor.get("/predict")
    assert response.status_code == 405 and "POST" in response.headers["Allow"] and response.json()["error"]


def test_schemathesis_finds_no_server_error_and_every_scored_record_is_logged(
    predictor: Predictor, monitoring_db: str
) -> None:
    result = fuzz(predictor.url, FUZZ_CASES)
    assert result.cases >= FUZZ_CASES
    assert result.server_errors == [], "\n".join(result.server_errors[:10])
    assert result.unclear_errors == [], "\n".join(result.unclear_errors[:10])
    # both valid and invalid data reached the scoring endpoints
    assert result.statuses[200] > 0 and result.statuses[422] > 0
    assert result.by_operation["POST /predict"] > FUZZ_CASES / 4
    assert predictor.get("/ready").status_code == 200
    # whatever the fuzzer got scored, the prediction log stored (a row PostgreSQL refuses would be lost)
    ids, scored = list(result.scored), sum(result.scored.values())
    deadline = time.monotonic() + 30
    while logged_rows(monitoring_db, ids) < scored and time.monotonic() < deadline:
        time.sleep(0.5)
    assert logged_rows(monitoring_db, ids) == scored > 0


def test_without_a_configured_token_reload_is_disabled(predictor: Predictor) -> None:
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        response = predictor.post("/reload", headers=headers)
        assert response.status_code == 503 and "no token is configured" in response.json()["error"]


def test_free_text_longer_than_the_limit_is_refused(
    predictor: Predictor,
    record: dict[str, Any],
    settings,  # type: ignore[no-untyped-def]
) -> None:
    limit = settings.serving.max_text_length
    assert predictor.post("/predict", json={**record, "month": "m" * limit}).status_code == 200  # open category
    too_long = {**record, "month": "m" * (limit + 1)}
    assert_names(predictor.post("/predict", json=too_long), 422, "month", f"at most {limit} characters")
    split = {"dataframe_split": {"columns": list(too_long), "data": [list(too_long.values())]}}
    assert_names(predictor.post("/predict", json=split), 422, "month", f"at most {limit} characters")


def test_a_key_given_twice_is_refused_not_last_one_wins(predictor: Predictor, record: dict[str, Any]) -> None:
    body = json.dumps(record)[:-1] + ', "age": 99}'
    assert_names(predictor.post("/predict", data=body.encode(), headers=JSON), 422, "age", "duplicate key")
    batch = "[" + json.dumps(record) + "," + body + "]"
    assert_names(predictor.post("/predict", data=batch.encode(), headers=JSON), 422, "age", "duplicate key")
    spaced = json.dumps(record, separators=(", ", " : "))  # other spacing: no duplicate, still accepted
    assert predictor.post("/predict", data=spaced.encode(), headers=JSON).status_code == 200


def test_a_byte_order_mark_is_skipped_in_json_as_in_csv(predictor: Predictor, record: dict[str, Any]) -> None:
    response = predictor.post("/predict", data=b"\xef\xbb\xbf" + json.dumps(record).encode(), headers=JSON)
    assert response.status_code == 200, response.text[:300]


def test_text_cells_a_spreadsheet_would_run_come_back_quoted(predictor: Predictor, record: dict[str, Any]) -> None:
    cells = {**record, "month": '=HYPERLINK("http://evil.example","x")', "balance": -120}
    rows = [list(cells), ["" if v is None else str(v) for v in cells.values()]]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    response = predictor.post("/predict", data=out.getvalue().encode(), headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text[:300]
    scored = list(csv.DictReader(io.StringIO(response.text)))
    assert scored[0]["month"] == "'" + cells["month"]  # neutralised: a spreadsheet shows it as text
    assert scored[0]["balance"] == "-120"  # a number stays as sent
