"""Mage's whole route table, called on a real Mage server started as the native stack starts it
(``orchestration.mage_server``: the launcher's lock-down, login required), proves issue #25's item 1, the Mage
part of 6, and 7: no route answers 2xx without a login except those docs/reliability.md lists (each with its
reason), none sends ``Access-Control-Allow-Origin: *``, the event-matcher attack starts no run, oversized
bodies are refused with 413 before anything is stored or logged, a token in a route's path reaches no log, and
trigger tokens are not shown by Mage's API."""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from mlops.core import config, services
from mlops.core.monitoring import store
from mlops.core.platform import orchestration
from mlops.testing import mage_routes
from tests.reliability.test_retrain_trigger import RESOLVED, SCHEDULER_SECONDS, Mage, pipeline_runs

pytestmark = [pytest.mark.postgres, pytest.mark.mage, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
FIRING = {
    "status": "firing",
    "alerts": [{"status": "firing", "labels": {"alertname": "prediction_drift"}, "startsAt": "2026-12-07T00:00:00Z"}],
}


@pytest.fixture(scope="module")
def mage(make_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mage]:
    """As ``test_retrain_trigger``'s, with a monitoring database of its own (a refused body is recorded there)."""
    folder = tmp_path_factory.mktemp("mage_routes")
    overrides = {
        "MLOPS_ORCHESTRATION__MAGE_URL": f"http://127.0.0.1:{services.free_port()}",
        "MLOPS_SECRETS__RETRAIN_TOKEN": secrets.token_hex(16),
        "MLOPS_SECRETS__MAGE_OWNER_PASSWORD": secrets.token_hex(16),
        "MLOPS_PATHS__WORK_DIR": str(folder / "work"),
        "MLOPS_STORES__MONITORING_DB": make_database("routes_monitoring"),
        "MAGE_DATA_DIR": str(folder / "mage_data"),
    }
    settings = config.load(environ={**os.environ, **overrides})
    database = make_database("routes_mage")
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    proc = orchestration.mage_server(settings, database, folder / "mage.log", SCHEDULER_SECONDS)
    try:
        orchestration.bootstrap(settings, database)
        proc.start()
        services.wait_http(f"{settings.orchestration.mage_url}/api/status", proc, timeout=240)
        yield Mage(settings, database, proc)
    finally:
        proc.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def documented_open_routes() -> set[str]:
    """The ``METHOD pattern`` entries of docs/reliability.md's list of Mage's routes open without a login."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    section = text.split("<!-- mage-open-routes -->")[1].split("<!-- /mage-open-routes -->")[0]
    return set(re.findall(r"`((?:GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) [^`]+)`", section))


def rows(database: str, table: str) -> int:
    eng = sa.create_engine(store.normalise_url(database))
    try:
        with eng.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        eng.dispose()


def test_no_route_answers_without_a_login_but_the_documented_ones(mage: Mage) -> None:
    found = mage_routes.check_routes(mage.settings.orchestration.mage_url)
    print(json.dumps(found, indent=1))
    patterns = {route.pattern for route in mage_routes.route_table()}
    documented = documented_open_routes()
    unknown = {entry for entry in documented if entry.split(" ")[1] not in patterns}
    assert documented and not unknown, unknown  # the doc names routes Mage has
    assert found["routes_checked"] == len(patterns) or found["routes_checked"] >= 50
    assert found["open_state_changing"] == 0, found["open"]
    assert set(found["open"]) <= documented, set(found["open"]) - documented
    assert found["cors_star"] == []


def test_the_event_matcher_attack_starts_no_run(mage: Mage) -> None:
    base = mage.settings.orchestration.mage_url
    runs = pipeline_runs(mage.database)
    matcher = {"event_matcher": {"name": "x", "pattern": {"x": ["y"]}, "pipeline_schedule_ids": [1]}}
    created = requests.post(f"{base}/api/event_matchers", json=matcher, timeout=30)
    assert created.status_code == 401, created.text[:300]
    assert "access-control-allow-origin" not in {k.lower() for k in created.headers}
    for method in ("GET", "PUT", "DELETE"):
        assert requests.request(method, f"{base}/api/event_matchers/1", json=matcher, timeout=30).status_code == 401
    event = requests.post(f"{base}/api/events", json={"event": {"x": "y", **FIRING}}, timeout=30)
    assert event.status_code == 401, event.text[:300]
    preflight = requests.options(f"{base}/api/events", headers={"Origin": "http://evil.example"}, timeout=30)
    assert preflight.status_code == 401 and "Access-Control-Allow-Origin" not in preflight.headers
    time.sleep(2 * SCHEDULER_SECONDS + 1)
    assert rows(mage.database, "event_matcher") == 0
    assert pipeline_runs(mage.database) == runs


def test_oversized_bodies_are_refused_before_mage_stores_or_logs_them(mage: Mage, tmp_path: Path) -> None:
    base = mage.settings.orchestration.mage_url
    log = Path(mage.process.log_path)
    runs, log_size = pipeline_runs(mage.database), log.stat().st_size
    filler = "x" * (5 * MiB)
    event = requests.post(f"{base}/api/events", json={"event": {"blob": filler}}, timeout=60)
    assert event.status_code == 413, event.text[:300]
    trigger = orchestration.retrain_trigger_url(mage.settings)
    big = {**FIRING, "blob": "x" * (20 * MiB)}
    for url in (trigger, trigger.rsplit("/", 1)[0] + "/" + mage_routes.WRONG_TOKEN):
        refused = requests.post(url, json=big, timeout=120)
        assert refused.status_code == 413, refused.text[:300]
        assert "pipeline_run" not in refused.text
    time.sleep(2 * SCHEDULER_SECONDS + 1)
    assert pipeline_runs(mage.database) == runs
    assert log.stat().st_size - log_size < 64 * 1024  # a few access-log lines, not the bodies
    # the right token's refusal is recorded by its size alone, as retrain.receive records one
    with store.connection(mage.settings.monitoring_db) as conn:
        recorded = [dict(r._mapping) for r in conn.execute(sa.select(store.alerts))]
    assert [r["action"] for r in recorded] == ["rejected"], recorded
    assert recorded[0]["payload"]["bytes"] > 20 * MiB and "max_webhook_bytes" in recorded[0]["outcome"]


def test_a_token_in_any_routes_path_reaches_no_log(mage: Mage) -> None:
    base = mage.settings.orchestration.mage_url
    token = mage.settings.secrets.retrain_token
    assert token
    for method, path in (
        ("POST", f"/api/runs/{token}"),
        ("GET", f"/api/runs/{token}"),
        ("GET", f"/api/downloads/{token}"),
        ("GET", f"/api/pipeline_schedules/1/pipeline_runs/{token}"),
        ("POST", f"/api/pipeline_schedules/1/pipeline_runs/{token}?x=1"),
    ):
        body = {"run": {"pipeline_uuid": "retrain", "block_uuid": "receive_alert"}, "blob": "x" * (2 * MiB)}
        answer = requests.request(method, base + path, json=body, timeout=60)
        assert answer.status_code in (401, 403, 405, 413), (method, path, answer.status_code)
    owner = orchestration.MageApi(mage.settings)  # logged in, Mage's own handlers run and log
    for path in (f"/api/downloads/{token}", f"/api/pipeline_schedules/1/pipeline_runs/{token}"):
        owner.http.get(owner.base + path, timeout=30)  # Mage's error answer echoes its own URL: not a log
    # accepted: a run of the retrain pipeline that only records a resolved alert, its block logs included
    accepted = requests.post(orchestration.retrain_trigger_url(mage.settings), json=RESOLVED, timeout=30).json()
    owner.wait_run(int(accepted["pipeline_run"]["id"]), timeout=300)
    time.sleep(2)
    folder = Path(mage.process.log_path).parent
    leaked = [str(p) for p in folder.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
    assert leaked == []
    assert "/api/runs/<redacted>" in Path(mage.process.log_path).read_text(errors="replace")


def test_trigger_tokens_are_not_shown_and_the_owner_still_works(mage: Mage) -> None:
    """Mage's API shows no trigger's token (the UI's trigger page and runs list read it there), except once to
    whoever creates a trigger; the owner's session still opens the UI's websocket and creates triggers (what
    Run@once does, here inactive: nothing runs)."""
    token = mage.settings.secrets.retrain_token
    assert token
    owner = orchestration.MageApi(mage.settings)
    for path in ("/api/pipeline_schedules/1", "/api/pipeline_schedules", "/api/pipeline_runs?_limit=50"):
        owner.http.get(owner.base + path, timeout=30)  # Mage's error answer echoes its own URL: not a log, path
    assert owner.get("/api/pipeline_schedules/1")["pipeline_schedule"]["token"] == "[API_TOKEN_PLACEHOLDER]"
    once = {"name": "run once", "schedule_type": "time", "schedule_interval": "@once", "status": "inactive"}
    created = owner.post("/api/pipelines/retrain/pipeline_schedules", {"pipeline_schedule": once})
    assert created["pipeline_schedule"]["schedule_interval"] == "@once"
    api = {"name": "api", "schedule_type": "api", "status": "inactive"}
    shown = owner.post("/api/pipelines/retrain/pipeline_schedules", {"pipeline_schedule": api})["pipeline_schedule"]
    assert re.fullmatch(r"\w{16,}", shown["token"]), shown
    again = owner.get(f"/api/pipeline_schedules/{shown['id']}")["pipeline_schedule"]
    assert again["token"] == "[API_TOKEN_PLACEHOLDER]"
    upgrade = {**mage_routes.UPGRADE, "Origin": owner.base}
    socket = owner.http.get(f"{owner.base}/websocket/", headers=upgrade, timeout=10, stream=True)
    assert socket.status_code == 101
    socket.close()
    anonymous = requests.get(f"{owner.base}/websocket/", headers=upgrade, timeout=10, stream=True)
    assert anonymous.status_code == 401
    foreign = owner.http.get(
        f"{owner.base}/websocket/", headers={**upgrade, "Origin": "http://evil.example"}, timeout=10, stream=True
    )
    assert foreign.status_code == 403
