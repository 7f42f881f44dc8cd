"""The predictor under gunicorn with the trained challenger: exact parity over HTTP on every row of the
dataset, every scored record logged exactly once, and a model switch under load without a failed request."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlops.core import config
from mlops.core.data import features, preparation
from mlops.core.monitoring import store
from mlops.core.serving import scoring
from mlops.core.training import registry
from mlops.testing.payloads import write_local_payload

from .conftest import Predictor

TOKEN = "reload-token-for-this-test"


@pytest.fixture(scope="module")
def predictor(challenger_payload: Path, start_predictor: Callable[..., Predictor]) -> Predictor:
    return start_predictor(challenger_payload, env={"MLOPS_SECRETS__RELOAD_TOKEN": TOKEN})


@pytest.fixture(scope="module")
def in_process(settings: config.Settings, bank_frame: pd.DataFrame) -> np.ndarray:
    """The registered challenger's own probabilities on every row (the reference for parity)."""
    pipeline = registry.load_pipeline(settings.training.model_name, registry.CHALLENGER)
    return np.asarray(pipeline.predict_proba(features.normalise(bank_frame, settings.dataset))[:, 1])


def logged_rows(settings: config.Settings, request_ids: list[str]) -> int:
    engine = store.engine(settings.monitoring_db)
    try:
        with engine.connect() as conn:
            query = sa.select(sa.func.count()).where(store.predictions.c.request_id.in_(request_ids))
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def wait_for_rows(settings: config.Settings, request_ids: list[str], expected: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    count = logged_rows(settings, request_ids)
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        count = logged_rows(settings, request_ids)
    return count


def test_http_predictions_equal_the_registered_model_on_every_row(
    predictor: Predictor, bank_frame: pd.DataFrame, in_process: np.ndarray, settings: config.Settings
) -> None:
    records = scoring.frame_records(bank_frame, settings.dataset.features)
    assert len(records) == 45_211 and sum(r["job"] is None for r in records) > 0
    response = predictor.post("/predict", json=records)
    assert response.status_code == 200, response.text[:500]
    served = np.array([p["probability"] for p in response.json()["predictions"]])
    assert np.max(np.abs(served - in_process)) <= 1e-6
    # CSV in, CSV out: the same numbers.
    csv_text = bank_frame[settings.dataset.features].to_csv(index=False)
    as_csv = predictor.post("/predict", data=csv_text.encode(), headers={"Content-Type": "text/csv"})
    assert as_csv.status_code == 200
    from_csv = pd.read_csv(io.StringIO(as_csv.text))
    assert np.max(np.abs(from_csv["probability"].to_numpy() - in_process)) <= 1e-6
    assert len(from_csv) == len(bank_frame) and from_csv["decision"].dtype == bool


def test_every_scored_record_is_logged_exactly_once(
    predictor: Predictor, bank_frame: pd.DataFrame, settings: config.Settings
) -> None:
    records = scoring.frame_records(bank_frame.sample(200, random_state=5), settings.dataset.features)
    ids = [predictor.post("/predict", json=records[i]).json()["request_id"] for i in range(40)]
    ids.append(predictor.post("/predict", json=records).json()["request_id"])
    assert wait_for_rows(settings, ids, 40 + 200) == 240
    time.sleep(2 * settings.serving.log_flush_seconds)
    assert logged_rows(settings, ids) == 240  # and no more


def test_reload_switches_models_under_load_without_a_failed_request(
    predictor: Predictor,
    challenger_payload: Path,
    bank_frame: pd.DataFrame,
    fit_small: Callable[..., Any],
    settings: config.Settings,
) -> None:
    before = predictor.get("/model").json()["version"]
    new_version = str(int(before) + 100)
    train = preparation.load_split(settings, "train")
    records = scoring.frame_records(bank_frame.sample(50, random_state=9), settings.dataset.features)
    outcomes: list[tuple[int, str | None, str | None]] = []  # status, served version, request id
    failures: list[str] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        i = worker
        while not stop.is_set():
            try:
                response = predictor.post("/predict", json=records[i % len(records)])
                body = response.json() if response.status_code == 200 else {}
                outcomes.append((response.status_code, body.get("model_version"), body.get("request_id")))
            except Exception as exc:  # a refused or reset connection is exactly what must not happen
                failures.append(repr(exc))
            i += 4

    clients = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for client in clients:
        client.start()
    try:
        time.sleep(2)
        # Deploy a different model (another family) into the payload, then ask for the graceful reload.
        pipeline = fit_small("logistic_regression", train, settings)
        write_local_payload(challenger_payload, pipeline, new_version, train, settings, "logistic_regression")
        answer = predictor.post("/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 202 and answer.json()["payload_version"] == new_version
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(v == new_version for _, v, _ in outcomes[-20:]):
            time.sleep(0.5)
        time.sleep(2)
    finally:
        stop.set()
        for client in clients:
            client.join(60)
    assert not failures, failures[:5]
    statuses = [status for status, _, _ in outcomes]
    assert statuses and set(statuses) == {200}
    versions = [version for _, version, _ in outcomes]
    assert before in versions and versions[-1] == new_version
    assert predictor.get("/model").json()["version"] == new_version
    # The workers that left flushed their prediction log: every answered request has its row.
    ids = [request_id for _, _, request_id in outcomes if request_id]
    assert wait_for_rows(settings, ids, len(ids)) == len(ids)
