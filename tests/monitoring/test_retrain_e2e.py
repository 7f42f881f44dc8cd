"""End to end: Grafana's webhook body, POSTed to the retrain trigger of a Mage server on PostgreSQL, retrains,
deploys through the deploy pipeline and the predictor serves the outcome; a resolved body or a replay of the
same firing body starts no training."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from mlops.core import config, services
from mlops.core.lifecycle import deploy, promotion, retrain
from mlops.core.platform import mage_launcher, orchestration
from mlops.core.training import registry

from .conftest import webhook

pytestmark = [pytest.mark.postgres, pytest.mark.mlflow, pytest.mark.mage, pytest.mark.slow]

# Small training budgets: the retrain run must fit the suite's time budget (about a minute on an idle
# machine; the wait below is generous because the CI machine's two cores may be shared).
RETRAIN_OVERRIDES = {
    "MLOPS_TRAINING__FAMILIES": "[logistic_regression]",
    "MLOPS_TRAINING__SEARCH__MAX_TRIALS": "2",
    "MLOPS_TRAINING__SEARCH__TIME_BUDGET_SECONDS": "10",
}
RUN_TIMEOUT = 600


@dataclass
class Stack:
    settings: config.Settings
    mage_url: str
    mage: services.ManagedProcess


@pytest.fixture(scope="module")
def stack(
    champion: str, make_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("retrain_e2e")
    mage_port, predictor_port = services.free_port(), services.free_port()
    overrides = {
        **RETRAIN_OVERRIDES,
        "MLOPS_ORCHESTRATION__MAGE_URL": f"http://127.0.0.1:{mage_port}",
        "MLOPS_SECRETS__RETRAIN_TOKEN": secrets.token_hex(16),
        "MLOPS_SECRETS__RELOAD_TOKEN": secrets.token_hex(16),
        "MLOPS_SECRETS__MAGE_OWNER_PASSWORD": secrets.token_hex(16),
        "MLOPS_SERVING__PORT": str(predictor_port),
        "MLOPS_SERVING__URL": f"http://127.0.0.1:{predictor_port}",
        "MLOPS_SERVING__WORKERS": "1",
        "MLOPS_SERVING__PAYLOAD_DIR": str(folder / "payload"),
        "MLOPS_STORES__MONITORING_DB": make_database("e2e_monitoring"),
        "MLOPS_MONITORING__REPORTS_DIR": str(folder / "reports"),
        "MAGE_DATA_DIR": str(folder / "mage_data"),
    }
    settings = config.load(environ={**os.environ, **overrides})
    mage_db = make_database("e2e_mage")
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)  # the bootstrap child and the server inherit them
    proc = orchestration.mage_server(settings, mage_db, folder / "mage.log", scheduler_interval_seconds=2)
    try:
        orchestration.bootstrap(settings, mage_db)
        proc.start()
        services.wait_http(f"{settings.orchestration.mage_url}/api/status", proc, timeout=240)
        yield Stack(settings, settings.orchestration.mage_url, proc)
    finally:
        proc.stop()
        pid_file = deploy.run_dir(settings) / "predictor.pid"  # deploy starts the predictor natively
        if pid_file.is_file():
            services.stop_group(int(pid_file.read_text()))
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def trigger(stack: Stack, body: dict[str, Any]) -> int:
    response = requests.post(orchestration.retrain_trigger_url(stack.settings), json=body, timeout=30)
    answer = response.json()
    assert response.status_code == 200 and "error" not in answer, answer  # a wrong token is HTTP 200 + error
    return int(answer["pipeline_run"]["id"])


def wait_run(stack: Stack, run_id: int, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
    """The finished run; a run that hangs fails the test with where each block run and each Mage process was."""
    try:
        return orchestration.MageApi(stack.settings).wait_run(run_id, timeout)
    except orchestration.RunTimeout as stuck:
        asked = mage_launcher.dump_stacks(stack.mage.pid)
        time.sleep(2)  # the stacks are written by each process's signal handler
        log = [line for line in stack.mage.log_tail(2000).splitlines() if "tornado.access" not in line]
        pytest.fail(
            f"{stuck}\n{asked} Mage processes' stacks and the end of {stack.mage.log_path}:\n" + "\n".join(log[-400:])
        )


def versions(settings: config.Settings) -> list[str]:
    client = registry.configure(settings)
    found = client.search_model_versions(f"name='{settings.training.model_name}'")
    return sorted((str(v.version) for v in found), key=int)


def test_a_wrong_token_starts_nothing(stack: Stack) -> None:
    url = orchestration.retrain_trigger_url(stack.settings).rsplit("/", 1)[0] + "/notTheToken0"
    answer = requests.post(url, json=webhook("webhook-firing.json"), timeout=30).json()
    assert "error" in answer and "pipeline_run" not in answer


def test_firing_webhook_retrains_and_deploys_and_replays_do_not(stack: Stack, champion: str) -> None:
    settings = stack.settings
    before = versions(settings)
    run = wait_run(stack, trigger(stack, webhook("webhook-firing.json")))
    log = Path(settings.work_dir) / "mage_data"
    assert run["status"] == "completed", f"retrain run {run['id']} {run['status']} (logs under {log})"

    new = versions(settings)
    assert len(new) == len(before) + 1
    version = new[-1]
    client = registry.configure(settings)
    tags = client.get_model_version(settings.training.model_name, version).tags
    assert tags["training_batches"] == ",".join(retrain.labeled_batches(settings))
    assert tags["holdout"] == "test," + ",".join(f"batch:{b}.holdout" for b in retrain.labeled_batches(settings))

    event = retrain.latest_event(settings, version)
    assert event is not None and event["action"] in ("promoted", "rejected")
    assert event["details"]["holdout"] == tags["holdout"].split(",")
    (alert,) = [a for a in retrain.alerts(settings) if a["action"] == "retrain"]
    assert alert["outcome"].startswith(f"version {version} {event['action']}")
    served = promotion.champion_version(settings)
    assert served == (version if event["action"] == "promoted" else champion)
    assert requests.get(f"{settings.serving.url}/model", timeout=10).json()["version"] == served

    for body in (webhook("webhook-resolved.json"), webhook("webhook-firing.json")):
        assert wait_run(stack, trigger(stack, body))["status"] == "completed"
    assert versions(settings) == new  # no training
    assert [a["action"] for a in retrain.alerts(settings)] == ["retrain", "ignored", "duplicate"]


def test_a_stuck_run_can_be_located(stack: Stack) -> None:
    """What wait_run reports when a run hangs: each latest run's block runs, and every Mage process's stacks."""
    where = orchestration.MageApi(stack.settings).latest_runs()
    assert "of retrain: completed (receive_alert completed, retrain_challenger completed" in where, where
    assert "of deploy: completed" in where, where  # the run retrain started

    before = stack.mage.log_path.stat().st_size
    asked = mage_launcher.dump_stacks(stack.mage.pid)
    assert asked >= 2  # the server and at least the scheduler it forked
    time.sleep(2)
    with stack.mage.log_path.open(errors="replace") as log:
        log.seek(before)
        dumped = log.read()
    assert dumped.count("Current thread") + dumped.count("Thread 0x") >= asked, dumped[-2000:]
    assert requests.get(f"{stack.mage_url}/api/status", timeout=10).status_code == 200  # nothing was stopped
