"""The retrain trigger (a Mage API trigger on a real Mage server, with login required and the owner's
password from the environment, as both docker-compose.yml and `python -m mlops up` run it) refuses a
missing or wrong token: Mage itself answers HTTP 200 with {"error": ...} and a traceback (FACTS.md); the
platform's launcher makes a wrong token a 401 of one line. The proof that nothing ran is that no
pipeline run exists afterwards; the right token does create one. Mage's own API, which could start the
same pipeline without the trigger's token, refuses anyone but the logged-in owner. The server listens on
loopback only."""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import requests
import sqlalchemy as sa

from mlops.core import config, services
from mlops.core.monitoring import store
from mlops.core.platform import orchestration
from mlops.testing.drills import listening

pytestmark = [pytest.mark.postgres, pytest.mark.mage, pytest.mark.slow]
SCHEDULER_SECONDS = 2


@dataclass
class Mage:
    settings: config.Settings
    database: str
    process: services.ManagedProcess


@pytest.fixture(scope="module")
def mage(make_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mage]:
    folder = tmp_path_factory.mktemp("mage")
    overrides = {
        "MLOPS_ORCHESTRATION__MAGE_URL": f"http://127.0.0.1:{services.free_port()}",
        "MLOPS_SECRETS__RETRAIN_TOKEN": secrets.token_hex(16),
        "MAGE_DATA_DIR": str(folder / "mage_data"),
        # login is always required (orchestration.mage_server): the owner's password comes from here
        "MLOPS_SECRETS__MAGE_OWNER_PASSWORD": secrets.token_hex(16),
    }
    settings = config.load(environ={**os.environ, **overrides})
    database = make_database("reliability_mage")
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)  # the bootstrap child and the server read them
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


def pipeline_runs(database: str) -> int:
    eng = sa.create_engine(store.normalise_url(database))
    try:
        with eng.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM pipeline_run")).scalar_one())
    finally:
        eng.dispose()


RESOLVED = {"status": "resolved", "alerts": [{"status": "resolved", "labels": {"alertname": "prediction_drift"}}]}


def test_a_missing_or_wrong_token_starts_no_run_and_the_right_one_does(mage: Mage) -> None:
    url = orchestration.retrain_trigger_url(mage.settings)
    base, token = url.rsplit("/", 1)
    for wrong in (f"{base}/not-the-token", f"{base}/{token[:-1]}", f"{base}/{token.upper()}x", f"{base}/", base):
        response = requests.post(wrong, json=RESOLVED, timeout=30)
        try:
            answer = response.json()
        except ValueError:  # e.g. Mage's bare 405 for the URL without a token
            answer = {}
        assert response.status_code != 200 or "error" in answer, (wrong, response.status_code, answer)
        assert "pipeline_run" not in answer, (wrong, answer)
        if re.fullmatch(r"\w+", wrong.rsplit("/", 1)[1]):  # a token-shaped wrong token: 401, one line
            assert response.status_code == 401, (wrong, response.status_code, response.text[:300])
            assert "Traceback" not in response.text and wrong.rsplit("/", 1)[1] not in response.text
    time.sleep(2 * SCHEDULER_SECONDS + 1)  # a run would have been created and picked up by now
    assert pipeline_runs(mage.database) == 0

    accepted = requests.post(url, json=RESOLVED, timeout=30).json()  # control: the check can see a run
    assert "pipeline_run" in accepted, accepted
    assert pipeline_runs(mage.database) == 1


def test_mage_listens_on_loopback_only(mage: Mage) -> None:
    sockets = listening(mage.process.pid)
    assert sockets and {ip for ip, _ in sockets} == {"127.0.0.1"}, sockets


def test_mage_api_needs_the_owner_login(mage: Mage) -> None:
    """Without the login, Mage's API neither creates a run of the retrain pipeline (no trigger token needed
    there) nor shows one; a wrong password does not log in; the owner's does."""
    from mage_ai.settings.server import OAUTH2_APPLICATION_CLIENT_ID

    base = mage.settings.orchestration.mage_url
    schedule = mage.settings.orchestration.retrain_schedule_id
    runs_before = pipeline_runs(mage.database)
    create = f"{base}/api/pipeline_schedules/{schedule}/pipeline_runs"
    for headers in ({}, {"X-API-KEY": OAUTH2_APPLICATION_CLIENT_ID}):
        for response in (
            requests.post(create, json={"pipeline_run": {"variables": {}}}, headers=headers, timeout=30),
            requests.get(f"{base}/api/pipeline_schedules/{schedule}", headers=headers, timeout=30),
        ):
            assert "error" in response.json(), (headers, response.text[:300])
    time.sleep(2 * SCHEDULER_SECONDS + 1)
    assert pipeline_runs(mage.database) == runs_before

    wrong = mage.settings.model_copy(
        update={"secrets": config.Secrets(mage_owner_password="wrong-password-for-this-test")}
    )
    with pytest.raises(orchestration.OrchestrationError, match="password invalid"):
        orchestration.MageApi(wrong)
    owner = orchestration.MageApi(mage.settings)
    assert owner.get(f"/api/pipeline_schedules/{schedule}")["pipeline_schedule"]["pipeline_uuid"] == "retrain"
