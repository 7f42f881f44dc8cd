"""The predictor's HTTP contract, in process (Flask's test client on a real payload): answers, validation
errors naming every bad field, limits, no 500 on junk, reload auth, and an OpenAPI document that
describes every answer given here."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from mlops.core import config
from mlops.core.monitoring import store
from mlops.core.serving import predictor_app, scoring
from mlops.testing.payloads import write_local_payload

from .conftest import settings_with

MAX_ROWS = 50
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def api_settings(tmp_path_factory: pytest.TempPathFactory) -> config.Settings:
    folder = tmp_path_factory.mktemp("api")
    base = config.load()
    base = base.model_copy(
        update={"stores": base.stores.model_copy(update={"monitoring_db": f"sqlite:///{folder / 'monitoring.db'}"})}
    )
    return settings_with(base, max_batch_rows=MAX_ROWS, max_body_bytes=MAX_BODY, spool_dir=folder / "spool")


@pytest.fixture(scope="module")
def reference(bank_frame: pd.DataFrame, api_settings: config.Settings) -> pd.DataFrame:
    split = api_settings.dataset.split
    return bank_frame[bank_frame[split.column].isin(split.reference)].head(6000)


@pytest.fixture(scope="module")
def xgb_payload(reference, fit_small, api_settings, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    pipeline = fit_small("xgboost", reference, api_settings)
    return write_local_payload(tmp_path_factory.mktemp("xgb"), pipeline, "7", reference, api_settings, "xgboost")


def make_app(settings: config.Settings, payload_dir: Path) -> Iterator[Flask]:
    app = predictor_app.create_app(settings, payload_dir)
    yield app
    app.extensions["prediction_log"].close()


@pytest.fixture(scope="module")
def app(api_settings, xgb_payload) -> Iterator[Flask]:  # type: ignore[no-untyped-def]
    yield from make_app(api_settings.model_copy(update={"secrets": config.Secrets(reload_token="s3cret")}), xgb_payload)


@pytest.fixture(scope="module")
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="module")
def records(bank_frame: pd.DataFrame, api_settings: config.Settings) -> list[dict[str, Any]]:
    rows = bank_frame.sample(40, random_state=1)
    return scoring.frame_records(rows, api_settings.dataset.features)


@pytest.fixture(scope="module")
def openapi(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.get_json())


def conforms(openapi: dict[str, Any], path: str, method: str, response: Any) -> None:
    """The answer's status and body are the ones the OpenAPI document declares."""
    declared = openapi["paths"][path][method]["responses"]
    assert str(response.status_code) in declared, f"{method.upper()} {path}: {response.status_code} undocumented"
    content = declared[str(response.status_code)]["content"]
    assert response.mimetype in content, f"{method.upper()} {path}: {response.mimetype} undocumented"
    schema = content[response.mimetype].get("schema")
    if schema and response.mimetype == "application/json":
        jsonschema.validate(response.get_json(), {**schema, "components": openapi["components"]})


def test_health_ready_model(client: FlaskClient, openapi: dict[str, Any]) -> None:
    for path in ("/health", "/ready", "/model"):
        response = client.get(path)
        assert response.status_code == 200
        conforms(openapi, path, "get", response)
    model = client.get("/model").get_json()
    assert model["version"] == "7" and model["scorer"] == "compiled" and model["alias"] == "champion"
    assert model["compiled_trees"] is True  # an XGBoost model: few records walk its trees as numpy arrays
    assert set(model["schema"]["categorical"]) >= {"job", "month"}


def test_predict_one_and_many(client: FlaskClient, records: list[dict[str, Any]], openapi: dict[str, Any]) -> None:
    one = client.post("/predict", json=records[0])
    conforms(openapi, "/predict", "post", one)
    body = one.get_json()
    assert body["model_version"] == "7" and len(body["predictions"]) == 1
    assert one.headers["X-Request-ID"] == body["request_id"] and "app;dur=" in one.headers["Server-Timing"]
    many = client.post("/predict", json=records).get_json()
    assert many["predictions"][0]["probability"] == body["predictions"][0]["probability"]
    assert all(p["decision"] == (p["probability"] >= many["threshold"]) for p in many["predictions"])


def test_csv_in_csv_out(client: FlaskClient, records: list[dict[str, Any]], bank_frame: pd.DataFrame) -> None:
    features = list(records[0])
    text = pd.DataFrame(records[:10])[features].to_csv(index=False)
    response = client.post("/predict", data=text, content_type="text/csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0] == ",".join([*features, "probability", "decision"]) and len(lines) == 11
    expected = client.post("/predict", json=records[:10]).get_json()["predictions"]
    for line, prediction in zip(lines[1:], expected, strict=True):
        *_, probability, decision = line.split(",")
        assert float(probability) == prediction["probability"] and decision == str(prediction["decision"]).lower()


def test_every_bad_field_is_named(client: FlaskClient, records: list[dict[str, Any]], openapi: dict[str, Any]) -> None:
    bad = {**records[0], "age": "forty", "balance": None, "job": "astronaut", "duration": 100}
    del bad["loan"]
    response = client.post("/predict", json=[records[1], bad])
    conforms(openapi, "/predict", "post", response)
    assert response.status_code == 422
    problems = {e["field"]: e for e in response.get_json()["errors"]}
    assert set(problems) == {"age", "balance", "job", "duration", "loan"}
    assert all(e["record"] == 1 for e in problems.values())
    assert "number" in problems["age"]["reason"] and "missing" in problems["balance"]["reason"]
    assert "astronaut" in problems["job"]["reason"] and "unknown field" in problems["duration"]["reason"]
    assert problems["loan"]["reason"] == "required field is missing"


def test_missing_is_accepted_where_training_had_it_and_the_split_column_is_open(
    client: FlaskClient, records: list[dict[str, Any]]
) -> None:
    record = {**records[0], "job": None, "contact": None, "poutcome": None, "month": "aug"}
    assert client.post("/predict", json=record).status_code == 200
    assert client.post("/predict", json={**record, "marital": None}).status_code == 422  # never missing in training


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"age": 1,', "application/json", 400),
        (b"", "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b"[]", "application/json", 422),
        (b"42", "application/json", 422),
        (b"[1, 2]", "application/json", 422),
        (b"{}", "text/plain", 415),
        (b"{}", "", 415),
        (b"age\n1\n", "text/csv", 422),
        (b"", "text/csv", 422),
        (b"\xff", "text/csv", 400),
    ],
)
def test_malformed_requests(
    client: FlaskClient, openapi: dict[str, Any], body: bytes, content_type: str, status: int
) -> None:
    response = client.post("/predict", data=body, content_type=content_type or None)
    assert response.status_code == status, response.get_data(as_text=True)
    conforms(openapi, "/predict", "post", response)


def test_limits_answer_413(client: FlaskClient, records: list[dict[str, Any]], openapi: dict[str, Any]) -> None:
    too_many = client.post("/predict", json=(records * 2)[: MAX_ROWS + 1])
    assert too_many.status_code == 413 and str(MAX_ROWS) in too_many.get_json()["error"]
    conforms(openapi, "/predict", "post", too_many)
    csv_rows = pd.DataFrame((records * 2)[: MAX_ROWS + 1]).to_csv(index=False)
    assert client.post("/predict", data=csv_rows, content_type="text/csv").status_code == 413
    too_big = client.post("/predict", data=b"[" + b" " * MAX_BODY + b"]", content_type="application/json")
    assert too_big.status_code == 413
    conforms(openapi, "/predict", "post", too_big)


def test_junk_never_gets_a_500(client: FlaskClient, records: list[dict[str, Any]]) -> None:
    """Seeded random mutations of valid records: wrong types, odd values, odd shapes; always a 4xx."""
    rng = random.Random(7)
    oddities: list[Any] = [None, True, -1e308, 1e308, 2**70, "", "é" * 50, [], {}, [1], {"a": 1}, "NaN", 0]
    for _ in range(150):
        record: dict[str, Any] = dict(rng.choice(records))
        for _ in range(rng.randint(1, 4)):
            roll = rng.random()
            key = rng.choice([*record, "extra_" + str(rng.randint(0, 9))])
            if roll < 0.7:
                record[key] = rng.choice(oddities)
            elif roll < 0.85:
                record.pop(key, None)
            else:
                record = {"nested": record}
        body: Any = record if rng.random() < 0.5 else [record, rng.choice(records)]
        response = client.post("/predict", data=json.dumps(body), content_type="application/json")
        assert response.status_code in (200, 400, 413, 415, 422), response.get_data(as_text=True)
        explained = client.post("/explain", data=json.dumps(body), content_type="application/json")
        assert explained.status_code in (200, 400, 413, 415, 422), explained.get_data(as_text=True)
    deep = b"[" * 10_000  # nesting past the parser's recursion limit
    assert client.post("/predict", data=deep, content_type="application/json").status_code == 400
    assert client.post("/explain", data=deep, content_type="application/json").status_code == 400
    assert client.post("/explain", data=b'{"a":' * 5_000, content_type="application/json").status_code == 400


def test_explain(client: FlaskClient, records: list[dict[str, Any]], openapi: dict[str, Any]) -> None:
    response = client.post("/explain", json=records[0])
    conforms(openapi, "/explain", "post", response)
    body = response.get_json()
    assert set(body["contributions"]) == set(records[0]) and body["units"] == "log-odds"
    predicted = client.post("/predict", json=records[0]).get_json()["predictions"][0]["probability"]
    assert body["probability"] == predicted
    many = client.post("/explain", json=records[:2])
    assert many.status_code == 422 and "one JSON object" in many.get_json()["error"]


def test_reload_needs_the_token(client: FlaskClient, openapi: dict[str, Any]) -> None:
    missing = client.post("/reload")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = client.post("/reload", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    right = client.post("/reload", headers={"Authorization": "Bearer s3cret"})
    assert right.status_code == 503 and "gunicorn" in right.get_json()["error"]  # the test client is no gunicorn
    for response in (missing, wrong, right):
        conforms(openapi, "/reload", "post", response)


def test_no_token_configured_disables_reload(api_settings, xgb_payload) -> None:  # type: ignore[no-untyped-def]
    assert api_settings.secrets.reload_token is None
    for app in make_app(api_settings, xgb_payload):
        response = app.test_client().post("/reload", headers={"Authorization": "Bearer anything"})
        assert response.status_code == 503 and "no token" in response.get_json()["error"]


def test_without_a_model_it_is_alive_but_not_ready(api_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for app in make_app(api_settings, tmp_path):
        client = app.test_client()
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.get_json() == {"ready": False, "reason": "no champion deployed yet"}
        assert client.post("/predict", json={}).status_code == 503
        assert client.get("/model").status_code == 503
        assert client.get("/openapi.json").status_code == 200


def test_a_card_that_does_not_parse_keeps_it_not_ready_naming_the_field(
    api_settings, xgb_payload, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    card = json.loads((xgb_payload / "model.json").read_text())
    del card["threshold"]
    card["version"] = ["not", "a", "version"]
    (tmp_path / "model.json").write_text(json.dumps(card))
    for app in make_app(api_settings, tmp_path):
        reason = app.test_client().get("/ready").get_json()["reason"]
        assert "model.json" in reason and "threshold: Field required" in reason and "version:" in reason, reason


def test_unknown_paths_and_methods_answer_json(client: FlaskClient) -> None:
    assert client.get("/nowhere").get_json()["error"]
    wrong_method = client.get("/predict")
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]


def test_scored_records_are_logged(
    app: Flask, client: FlaskClient, records: list[dict[str, Any]], api_settings: config.Settings
) -> None:
    with client.post("/predict", json=records[:5]) as response:  # the row is queued once the answer is closed
        request_id = response.get_json()["request_id"]
    app.extensions["prediction_log"].close()  # drains the queue into the database
    engine = store.engine(api_settings.monitoring_db)
    with engine.connect() as conn:
        rows = (
            conn.execute(
                sa.select(store.predictions)
                .where(store.predictions.c.request_id == request_id)
                .order_by(store.predictions.c.record_index)
            )
            .mappings()
            .all()
        )
    engine.dispose()
    assert [r["record_index"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0]["inputs"] == records[0] and rows[0]["model_version"] == "7"


def split_body(records: list[dict[str, Any]], columns: list[str] | None = None) -> dict[str, Any]:
    columns = columns or list(records[0])
    return {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in records]}}


def test_dataframe_split_scores_like_records(
    client: FlaskClient, records: list[dict[str, Any]], openapi: dict[str, Any]
) -> None:
    """MLflow's column-oriented body (columns in any order, missing values included) gives the records' answers."""
    with_missing = [{**r, "job": None, "poutcome": None} if i % 3 == 0 else r for i, r in enumerate(records)]
    expected = client.post("/predict", json=with_missing).get_json()["predictions"]
    response = client.post("/predict", json=split_body(with_missing, sorted(with_missing[0], reverse=True)))
    conforms(openapi, "/predict", "post", response)
    assert response.status_code == 200 and response.get_json()["predictions"] == expected


@pytest.mark.parametrize(
    ("mutate", "status", "fields"),
    [
        (lambda b: b["dataframe_split"]["data"][3].__setitem__(0, "forty"), 422, {"age"}),
        (lambda b: b["dataframe_split"]["data"][5].__setitem__(1, True), 422, {"job"}),
        (lambda b: b["dataframe_split"]["data"][2].pop(), 422, {"(row)"}),
        (lambda b: b["dataframe_split"]["columns"].__setitem__(0, "duration"), 422, {"age", "duration"}),
        (lambda b: b["dataframe_split"].__setitem__("index", [0]), 422, {"dataframe_split"}),
        (lambda b: b["dataframe_split"].__setitem__("data", []), 422, {"dataframe_split.data"}),
        (lambda b: b["dataframe_split"]["data"].extend(b["dataframe_split"]["data"] * 2), 413, set()),
    ],
)
def test_dataframe_split_errors_name_the_record_and_field(
    client: FlaskClient,
    records: list[dict[str, Any]],
    openapi: dict[str, Any],
    mutate: Any,
    status: int,
    fields: set[str],
) -> None:
    features = ["age", "job", *[f for f in records[0] if f not in ("age", "job")]]
    body = split_body(records[:MAX_ROWS], features)
    mutate(body)
    response = client.post("/predict", json=body)
    conforms(openapi, "/predict", "post", response)
    assert response.status_code == status, response.get_json()
    errors = response.get_json()["errors"]
    assert {e["field"] for e in errors} == fields
    if fields and fields <= {"age", "job", "(row)"}:
        assert all("record" in e for e in errors)


def test_the_column_check_accepts_only_what_pydantic_accepts(app: Flask, records: list[dict[str, Any]]) -> None:
    """The fast column-wise check of a ``dataframe_split`` is never more lenient than the pydantic types, and
    what it accepts equals what pydantic makes of the same rows (seeded random mutations of real rows)."""
    from pydantic import ValidationError

    validator = app.extensions["model"].validator
    columns = list(records[0])
    rng = random.Random(11)
    oddities: list[Any] = [
        None,
        True,
        False,
        -1e308,
        1e308,
        2**70,
        2**1100,
        "",
        "\x00",
        "jun",
        "é",
        [],
        {},
        [1],
        0,
        7,
        1.5,
        float("nan"),
        float("inf"),
    ]
    accepted = refused = 0
    for _ in range(400):
        data = [[r[c] for c in columns] for r in rng.sample(records, 5)]
        for _ in range(rng.randint(0, 3)):
            data[rng.randrange(5)][rng.randrange(len(columns))] = rng.choice(oddities)
        fast = validator.columns.batch_if_valid(columns, data)
        try:
            slow = validator.many.validate_python([dict(zip(columns, row, strict=True)) for row in data])
        except ValidationError:
            slow = None
        if fast is None:
            refused += 1
            continue
        accepted += 1
        assert slow is not None, data
        assert list(fast) == slow
    assert accepted > 50 and refused > 50
