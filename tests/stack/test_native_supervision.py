"""The native stack for real (PostgreSQL, MLflow, Mage, Streamlit, the predictor; free ports, a temporary folder),
in the order a user meets it (#25 items 5, 6, 8):

1. after `make demo` (a champion in the configured SQLite registry, its payload in place) `up` refuses: its own
   registry has no champion; `up --discard-served-model` starts with no model served;
2. a champion deployed into the stack's registry: registry, alias and served model agree;
3. each service's processes hold only their own secrets; files with request data or secrets are 0600;
4. the gunicorn master SIGKILLed under load: the supervisor brings the predictor back, no answered prediction lost;
5. the supervisor and the predictor killed (a crash): `up` cleans the stale state and starts afresh, same model;
6. `down` stops the supervisor and everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psutil
import pytest
import requests
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline

from mlops.core import config, services
from mlops.core.data import features, preparation
from mlops.core.lifecycle import deploy
from mlops.core.platform import stack, stack_state
from mlops.core.platform.stack_state import State
from mlops.core.training import registry
from mlops.testing import supervision_drill
from tests.conftest import run_cli as mlops
from tests.reliability.conftest import records_of
from tests.stack.test_native_stack import base_environment
from tests.stack.test_supervision import _register_champion

pytestmark = [pytest.mark.slow, pytest.mark.mage, pytest.mark.postgres]


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    # Not under pytest's 0700 tmp folders: as root, the system PostgreSQL runs as `postgres`, who must reach it.
    path = Path(tempfile.mkdtemp(prefix="mlops-supervised-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    if os.environ.get("MLOPS_TEST_KEEP_STACK_FOLDER") != "1":  # keep it to read the services' logs
        subprocess.run(["rm", "-rf", str(path)], check=False)


@pytest.fixture(scope="module")
def stack_env(folder: Path, bank_csv: Path) -> dict[str, str]:
    return base_environment(folder / "work", bank_csv)


@pytest.fixture(scope="module")
def bank(bank_csv: Path) -> pd.DataFrame:
    return pd.read_csv(bank_csv)


def fitted(settings: config.Settings, frame: pd.DataFrame) -> Pipeline:
    X = features.normalise(frame, settings.dataset)
    pipeline = Pipeline([("preprocess", features.preprocessor(settings.dataset, "logistic_regression"))])
    pipeline.steps.append(("model", DummyClassifier(strategy="prior")))
    return pipeline.fit(X, preparation.labels(frame, settings))


@pytest.fixture(scope="module")
def after_the_demo(stack_env: dict[str, str], bank: pd.DataFrame) -> str:
    """What `make demo` leaves: a champion in the configured SQLite registry and its payload (run id returned)."""
    settings = config.load(environ=stack_env)
    for url in (settings.tracking_uri, settings.monitoring_db):
        services.private_sqlite(url)  # as demo.run does
    frame = bank.head(400)
    return _register_champion(settings, fitted(settings, frame), frame, features.normalise(frame, settings.dataset))


def run_folder(stack_env: dict[str, str]) -> Path:
    return Path(stack_env["MLOPS_PATHS__WORK_DIR"]) / "stack"


def stack_settings(stack_env: dict[str, str]) -> config.Settings:
    """This test's shell pointed at the stack (`set -a; . stack.env; set +a`)."""
    env_file = run_folder(stack_env) / stack_state.ENV_FILE
    pairs = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    return config.load(environ={**stack_env, **pairs})


def test_up_after_the_demo_refuses_a_model_its_registry_does_not_have(
    after_the_demo: str, stack_env: dict[str, str]
) -> None:
    result = mlops("up", env=stack_env, timeout=600)
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"v1 (run {after_the_demo})" in result.stderr and "has no champion" in result.stderr
    assert "MLOPS_STACK__DATABASE=sqlite python -m mlops up" in result.stderr
    assert "--discard-served-model" in result.stderr
    assert not (run_folder(stack_env) / stack_state.STATE_FILE).exists()  # what it started (PostgreSQL) is stopped
    assert not services.port_in_use(int(stack_env["MLOPS_STACK__POSTGRES_PORT"]))


@pytest.fixture(scope="module")
def running(after_the_demo: str, stack_env: dict[str, str]) -> Iterator[State]:
    started = time.monotonic()
    result = mlops("up", "--discard-served-model", env=stack_env, timeout=900)
    print(f"`up --discard-served-model` took {time.monotonic() - started:.0f} s\n{result.stdout}", file=sys.stderr)
    try:
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        assert "moved the payload holding bank-marketing v1" in result.stdout
        state = State.load(run_folder(stack_env))
        assert state is not None and state.supervised()
        yield state
    finally:
        if (run_folder(stack_env) / stack_state.STATE_FILE).exists():
            mlops("down", env=stack_env, timeout=300)


def served_and_registered(settings: config.Settings) -> tuple[tuple[str, str | None], tuple[str, str | None]]:
    answer = requests.get(f"{settings.serving.url}/model", timeout=30)
    card = answer.json()
    assert answer.status_code == 200, (answer.status_code, card)
    client = registry.configure(settings)
    champion = registry.version_by_alias(client, settings.training.model_name, registry.CHAMPION)
    assert champion is not None
    return (card["version"], card.get("run_id")), (str(champion.version), champion.tags.get("candidate_run_id"))


@pytest.fixture(scope="module")
def deployed(running: State, stack_env: dict[str, str], bank: pd.DataFrame) -> config.Settings:
    """A champion registered in the stack's own registry and deployed as deploy does (payload, reload)."""
    assert requests.get(f"{stack_env['MLOPS_SERVING__URL']}/ready", timeout=10).status_code == 503  # nothing served
    settings = stack_settings(stack_env)
    frame = bank.sample(400, random_state=3)
    _register_champion(settings, fitted(settings, frame), frame, features.normalise(frame, settings.dataset))
    assert services.wait_http(f"{settings.serving.url}/health", timeout=60) is None
    switched = deploy.switch_predictor(settings)
    print(f"deploy: {switched}", file=sys.stderr)
    assert "serves version 1" in switched, switched
    return settings


def test_the_registry_its_champion_and_the_served_model_agree(deployed: config.Settings) -> None:
    served, registered = served_and_registered(deployed)
    assert served == registered and served[1] is not None


def test_each_service_holds_only_its_own_secrets(running: State, deployed: config.Settings, folder: Path) -> None:
    generated = dict(
        line.split("=", 1)
        for line in (run_folder_of(folder) / stack_state.SECRETS_FILE).read_text().splitlines()
        if not line.startswith("#")
    )
    state = State.load(run_folder_of(folder))
    assert state is not None
    held = supervision_drill.secrets_in_environments(state, generated)
    print(f"secrets per service: {held}", file=sys.stderr)
    db = "POSTGRES_PASSWORD"  # inside the database URLs
    assert held == {
        "postgres": [],
        "mlflow": [db],
        "mage": sorted(["MLOPS_SECRETS__MAGE_OWNER_PASSWORD", "MLOPS_SECRETS__RELOAD_TOKEN", db]),
        "streamlit": [db],
        "predictor": sorted(["MLOPS_SECRETS__RELOAD_TOKEN", db]),
        "supervisor": [],
    }


def run_folder_of(folder: Path) -> Path:
    return folder / "work" / "stack"


def test_the_gunicorn_master_killed_under_load_comes_back_and_loses_nothing(
    deployed: config.Settings, stack_env: dict[str, str], bank: pd.DataFrame
) -> None:
    result = supervision_drill.master_kill(
        run_folder(stack_env), deployed.serving.url, deployed.monitoring_db, records_of(bank, deployed, rows=200)
    )
    print(f"master_kill: {result}", file=sys.stderr)
    assert result["recovered_seconds"] is not None and result["recovered_seconds"] < 120
    assert result["restarts"] == 1 and result["new_pid"] != result["killed_pid"]
    assert result["answered"] > 0 and result["lost"] == 0 and result["duplicated"] == 0
    served, registered = served_and_registered(deployed)
    assert served == registered
    status = mlops("status", env=stack_env, timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "predictor 1x" in status.stdout


PRIVATE = ("*.db", "*.db-journal", "*.db-wal", "*.sqlite*", "secrets.env", "stack.env", "state.json", "*token*")


def test_files_holding_request_data_or_secrets_are_private(deployed: config.Settings, folder: Path) -> None:
    work = folder / "work"
    spool = work / "spool"
    files = {p for pattern in PRIVATE for p in work.rglob(pattern) if p.is_file()}
    files |= {p for p in spool.rglob("*") if p.is_file()}  # the prediction log's journals and spool files
    files |= set(work.rglob("*.log"))
    assert any(p.name == "mlflow.db" for p in files) and (work / "stack" / "secrets.env") in files
    wide = sorted(f"{p} {p.stat().st_mode & 0o777:o}" for p in files if p.stat().st_mode & 0o077)
    assert wide == []


def test_up_after_a_crash_cleans_the_stale_state_and_starts_afresh(
    deployed: config.Settings, stack_env: dict[str, str]
) -> None:
    run = run_folder(stack_env)
    before = State.load(run)
    assert before is not None and before.supervisor is not None
    os.kill(before.supervisor.pid, signal.SIGKILL)  # a crash takes the supervisor too
    predictor = next(s for s in before.services if s.name == "predictor")
    os.kill(predictor.pid, signal.SIGKILL)
    started = time.monotonic()
    result = mlops("up", env=stack_env, timeout=900)
    print(f"`up` after a crash took {time.monotonic() - started:.0f} s\n{result.stdout}", file=sys.stderr)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "running with no supervisor" in result.stdout and "starting afresh" in result.stdout
    after = State.load(run)
    assert after is not None and after.supervised()
    assert not any(s.is_running() for s in before.services)  # nothing of the old run is left
    served, registered = served_and_registered(deployed)
    assert served == registered


def test_down_stops_the_supervisor_first_and_leaves_nothing(stack_env: dict[str, str], running: State) -> None:
    state = State.load(run_folder(stack_env))
    assert state is not None and state.supervisor is not None
    groups = {s.pid for s in [*state.services, state.supervisor]}
    result = mlops("down", env=stack_env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.index("supervisor") < result.stdout.index("predictor")
    left = [p for p in psutil.process_iter() if _pgid(p.pid) in groups and p.status() != psutil.STATUS_ZOMBIE]
    assert left == []
    assert stack.status(config.load(environ=stack_env)) == []


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
