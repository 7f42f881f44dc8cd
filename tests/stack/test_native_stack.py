"""`python -m mlops up | status | down` for real, in a temporary folder on free ports: every service answers its
health endpoint, a pipeline triggered through the Mage API completes, and `down` leaves no process behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from mlops.core import config, services
from mlops.core.platform import orchestration, stack, stack_state
from mlops.core.platform.stack_state import Service, State
from tests.conftest import run_cli as mlops

pytestmark = [pytest.mark.slow, pytest.mark.mage, pytest.mark.postgres]


def base_environment(work: Path, bank_csv: Path) -> dict[str, str]:
    """This process's environment without the session's MLOPS_/MAGE_ settings, then the stack's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MAGE_"))}
    serving_port, mage_port = services.free_port(), services.free_port()
    return {
        **env,
        "COLUMNS": "200",  # rich tables print whole lines into the captured output
        "MLOPS_PATHS__WORK_DIR": str(work),
        "MLOPS_SERVING__PAYLOAD_DIR": str(work / "payload"),
        "MLOPS_SERVING__SPOOL_DIR": str(work / "spool"),
        "MLOPS_SERVING__PORT": str(serving_port),
        "MLOPS_SERVING__URL": f"http://127.0.0.1:{serving_port}",
        "MLOPS_ORCHESTRATION__MAGE_URL": f"http://127.0.0.1:{mage_port}",
        "MLOPS_STACK__POSTGRES_PORT": str(services.free_port()),
        "MLOPS_STACK__MLFLOW_PORT": str(services.free_port()),
        "MLOPS_STACK__STREAMLIT_PORT": str(services.free_port()),
        "MLOPS_STACK__GRAFANA_PORT": str(services.free_port()),
        "MLOPS_DATASET__SOURCE__PATH": str(bank_csv),
    }


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    # Not under pytest's 0700 tmp folders: as root, the system PostgreSQL runs as `postgres`, who must reach it.
    path = Path(tempfile.mkdtemp(prefix="mlops-stack-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


@pytest.fixture(scope="module")
def stack_env(folder: Path, bank_csv: Path) -> dict[str, str]:
    return base_environment(folder / "work", bank_csv)


@pytest.fixture(scope="module")
def running(stack_env: dict[str, str], folder: Path) -> Iterator[State]:
    """`up` once for the module; `down` at the end whatever happened."""
    started = time.monotonic()
    result = mlops("up", env=stack_env)
    print(f"`python -m mlops up` took {time.monotonic() - started:.0f} s\n{result.stdout}", file=sys.stderr)
    run = folder / "work" / "stack"
    try:
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        state = State.load(run)
        assert state is not None
        yield state
    finally:
        if (run / stack_state.STATE_FILE).exists():  # test_down_leaves_no_process_behind did not get to it
            mlops("down", env=stack_env, timeout=300)


def test_up_refuses_a_port_in_use_and_starts_nothing(folder: Path, bank_csv: Path) -> None:
    work = folder / "refused"
    env = base_environment(work, bank_csv)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        env["MLOPS_STACK__MLFLOW_PORT"] = str(port)
        result = mlops("up", env=env, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"port {port} (mlflow) is in use" in result.stderr
    assert "MLOPS_STACK__MLFLOW_PORT" in result.stderr
    assert not (work / "stack" / stack_state.STATE_FILE).exists()


def test_every_service_answers_its_health_endpoint(running: State, stack_env: dict[str, str]) -> None:
    names = [s.name for s in running.services]
    assert names == ["postgres", "mlflow", "mage", "streamlit", "predictor"]  # the predictor waits for MLflow
    assert running.database == "postgres"  # the system binaries, run as the `postgres` user when root
    by_name = {s.name: s for s in running.services}
    assert services.postgres_reachable(by_name["postgres"].health)
    assert requests.get(f"{by_name['mlflow'].url}/health", timeout=10).status_code == 200
    mage_status = requests.get(f"{by_name['mage'].url}/api/status", timeout=10).json()["statuses"][0]
    assert mage_status["scheduler_status"] == "running"
    assert requests.get(f"{by_name['predictor'].url}/health", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{by_name['predictor'].url}/ready", timeout=10)
    assert ready.status_code == 503 and ready.json() == {"ready": False, "reason": "no champion deployed yet"}
    assert requests.get(f"{by_name['streamlit'].url}/_stcore/health", timeout=10).status_code == 200
    status = mlops("status", env=stack_env, timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "not ready: no champion deployed yet" in status.stdout
    assert "docker compose up grafana" in status.stdout  # no grafana binary here: status says where it runs


def generated_secrets(folder: Path) -> dict[str, str]:
    lines = (folder / "work" / "stack" / stack_state.SECRETS_FILE).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if not line.startswith("#"))


def mage_api(stack_env: dict[str, str], folder: Path) -> orchestration.MageApi:
    """Mage's API as its owner, with the password `up` generated into the run folder."""
    password = generated_secrets(folder)["MLOPS_SECRETS__MAGE_OWNER_PASSWORD"]
    return orchestration.MageApi(config.load(environ={**stack_env, "MLOPS_SECRETS__MAGE_OWNER_PASSWORD": password}))


def test_secrets_are_generated_private_and_used(running: State, folder: Path, stack_env: dict[str, str]) -> None:
    run = folder / "work" / "stack"
    for name in (stack_state.SECRETS_FILE, stack_state.ENV_FILE, stack_state.STATE_FILE):
        assert (run / name).stat().st_mode & 0o777 == 0o600, name
    generated = generated_secrets(folder)
    assert set(generated) == set(stack_state.GENERATED_SECRETS)
    assert all(len(value) >= 32 for value in generated.values())
    # Mage's API needs the generated owner login; the retrain trigger Grafana calls is pinned with the generated token
    mage = next(s for s in running.services if s.name == "mage")
    assert "error" in requests.get(f"{mage.url}/api/pipeline_schedules/1", timeout=10).json()
    trigger = mage_api(stack_env, folder).get("/api/pipeline_schedules/1")["pipeline_schedule"]
    assert trigger["pipeline_uuid"] == "retrain"
    assert trigger["token"] == "[API_TOKEN_PLACEHOLDER]"  # not shown even to the owner (mage_gate)


def test_a_pipeline_triggered_through_the_mage_api_completes(
    running: State, folder: Path, stack_env: dict[str, str]
) -> None:
    mage = next(s for s in running.services if s.name == "mage").url
    api = mage_api(stack_env, folder)
    created = api.post(
        "/api/pipelines/prepare/pipeline_schedules",
        {"pipeline_schedule": {"name": "stack test", "schedule_type": "api", "status": "active"}},
    )["pipeline_schedule"]
    triggered = requests.post(
        f"{mage}/api/pipeline_schedules/{created['id']}/pipeline_runs/{created['token']}",
        json={"pipeline_run": {"variables": {}}},
        timeout=30,
    ).json()
    assert "error" not in triggered, triggered
    run_id = triggered["pipeline_run"]["id"]
    assert api.wait_run(run_id, timeout=240)["status"] == "completed"
    prepared = folder / "work" / "datasets" / "bank-marketing"
    assert (prepared / "train.parquet").is_file() and (prepared / "batches" / "summer.parquet").is_file()


def test_mage_is_locked_down_as_far_as_it_allows(running: State, folder: Path, stack_env: dict[str, str]) -> None:
    mage = next(s for s in running.services if s.name == "mage").url
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    terminal = requests.get(f"{mage}/websocket/terminal", headers=upgrade, timeout=10, stream=True)
    assert terminal.status_code == 403  # no shell is started for an anonymous websocket
    wrong_token = "0f" * 16  # a token's shape (Mage routes only word characters there), not the token
    wrong = requests.post(f"{mage}/api/pipeline_schedules/1/pipeline_runs/{wrong_token}", json={}, timeout=30)
    assert wrong.status_code == 401 and "Traceback" not in wrong.text and wrong_token not in wrong.text
    api = mage_api(stack_env, folder)  # the owner, logged in
    edit = {"block": {"content": "import os"}}  # editing code through Mage's API is off, even for the owner
    answer = api.http.put(f"{api.base}/api/pipelines/prepare/blocks/load_raw_dataset", json=edit, timeout=30).json()
    assert "error" in answer, answer


def test_no_secret_reaches_a_log_and_logs_are_private(running: State, folder: Path, stack_env: dict[str, str]) -> None:
    """After the retrain trigger was called with its token (the body is no alert: the run only records it)."""
    secrets_used = generated_secrets(folder)
    mage = next(s for s in running.services if s.name == "mage").url
    token = secrets_used["MLOPS_SECRETS__RETRAIN_TOKEN"]
    called = requests.post(f"{mage}/api/pipeline_schedules/1/pipeline_runs/{token}", json={"a": 1}, timeout=30)
    assert called.status_code == 200 and "pipeline_run" in called.json(), called.text
    time.sleep(3)  # the access log line is written once the answer is sent
    logs = folder / "work" / "stack" / "logs"
    assert logs.stat().st_mode & 0o777 == 0o700
    every_log = list((folder / "work").rglob("*.log"))  # the services' logs and Mage's pipeline logs
    assert (logs / "mage.log") in every_log
    found = [
        (str(path), name)
        for path in every_log
        for name, value in secrets_used.items()
        if value in path.read_text(errors="replace")
    ]
    assert found == []
    for log in logs.glob("*.log"):
        assert log.stat().st_mode & 0o077 == 0, f"{log} is readable by others"
    assert "/pipeline_runs/<redacted>" in (logs / "mage.log").read_text()


def test_up_again_is_harmless(running: State, stack_env: dict[str, str]) -> None:
    result = mlops("up", env=stack_env, timeout=120)
    assert result.returncode == 0 and "already up" in result.stdout
    assert [s.pid for s in State.load(Path(stack_env["MLOPS_PATHS__WORK_DIR"]) / "stack").services] == [
        s.pid for s in running.services
    ]


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    """`down` trusts state.json only for pids that are still the processes it recorded (same start time)."""
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        ghost = Service("mlflow", sleeper.pid, psutil.Process(sleeper.pid).create_time() - 100, "", "", "")
        assert not ghost.is_running()
        assert stack.stop(State("sqlite", [ghost]), tmp_path) == []
        assert sleeper.poll() is None
        real = Service("mlflow", sleeper.pid, psutil.Process(sleeper.pid).create_time(), "", "", "")
        assert [name.split()[0] for name in stack.stop(State("sqlite", [real]), tmp_path)] == ["mlflow"]
        assert sleeper.wait(timeout=10) is not None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_embedded_postgres_is_stopped_by_its_recorded_postmaster(tmp_path: Path) -> None:
    """Without usable system binaries `up` runs pgserver's PostgreSQL, a daemon: `down` fast-stops its postmaster."""
    pid, url = stack.start_embedded_postgres(tmp_path)
    service = Service("postgres", pid, psutil.Process(pid).create_time(), "embedded", url, "", signal.SIGINT)
    try:
        assert stack.healthy(service)
        assert [name.split()[0] for name in stack.stop(State("embedded", [service]), tmp_path)] == ["postgres"]
        assert not service.is_running()
    finally:
        if service.is_running():
            os.kill(pid, signal.SIGKILL)


def test_down_leaves_no_process_behind(running: State, stack_env: dict[str, str]) -> None:
    groups = {os.getpgid(s.pid) for s in running.services}
    members = [p.pid for p in psutil.process_iter() if _group(p.pid) in groups]
    assert len(members) > len(running.services)  # the servers' workers and backends are in the groups too
    result = mlops("down", env=stack_env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(f"{s.name} (" in result.stdout for s in running.services), result.stdout
    alive = [p for p in members if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [psutil.Process(p).cmdline() for p in alive]
    for service in running.services:
        port = int(service.url.rsplit(":", 1)[1])
        assert not services.port_in_use(port), f"{service.name} still listens on {port}"
    status = mlops("status", env=stack_env, timeout=120)
    assert status.returncode == 1 and "not running" in status.stdout


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
