"""The native stack's supervision, secrets and bounds without the whole stack (seconds each): the supervisor
restarts a service that dies (with backoff) and kills what its group left; `up` cleans a stale state instead of
refusing; each service's environment holds only its own secrets; SQLite stores are 0600; the served model must be
the registry's champion; commands that deploy refuse beside a stack on another registry; broken Parquet and
oversized uploads are refused by name. The same promises on a real stack: test_native_supervision.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import psutil
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline

from mlops.core import config, services
from mlops.core.data import features, preparation, schema
from mlops.core.data.validation import DataValidationError
from mlops.core.lifecycle import batch_scoring
from mlops.core.platform import stack, stack_supervisor
from mlops.core.platform.stack_environment import confine
from mlops.core.platform.stack_errors import PortTaken, ServedModelMismatch
from mlops.core.platform.stack_processes import supervisor_process
from mlops.core.platform.stack_served_model import check_served_model, foreign_to_running_stack
from mlops.core.platform.stack_state import STATE_FILE, Service, State
from tests.conftest import ROOT
from tests.conftest import run_cli as mlops


def wait(condition, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_backoff_is_immediate_then_doubles_to_a_minute() -> None:
    assert [stack_supervisor.backoff(n) for n in range(1, 10)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]


def _service_with_a_child(run: Path, state: State) -> None:
    """A service whose leader leaves a child in its group when SIGKILLed (as a gunicorn master leaves workers)."""
    proc = services.ManagedProcess("streamlit", ["sh", "-c", "sleep 300 & exec sleep 301"], run / "logs" / "s.log")
    stack.launch(state, run, proc, "", "")


def _start_supervisor(run: Path, state: State) -> None:
    supervisor = confine(supervisor_process(config.load(), run)).start()
    created = psutil.Process(supervisor.pid).create_time()
    state.supervisor = Service("supervisor", supervisor.pid, created, "", "", str(supervisor.log_path))
    state.save(run)
    assert wait(lambda: "supervising" in supervisor.log_tail(), timeout=60)  # its imports take a while


def _loaded(run: Path) -> Service:
    state = State.load(run)
    assert state is not None
    return state.services[0]


def test_a_service_that_dies_is_started_again_with_backoff_and_its_leftovers_killed(tmp_path: Path) -> None:
    state = State("none")
    _service_with_a_child(tmp_path, state)
    _start_supervisor(tmp_path, state)
    try:
        first = state.services[0]
        assert wait(lambda: len(first.remains()) == 1)
        orphan = first.remains()[0]
        os.kill(first.pid, signal.SIGKILL)
        killed = time.monotonic()
        assert wait(lambda: _loaded(tmp_path).pid != first.pid and _loaded(tmp_path).is_running())
        assert time.monotonic() - killed < 3  # the first restart is immediate (the supervisor polls twice a second)
        assert wait(lambda: gone(orphan))  # the group went with its leader
        second = _loaded(tmp_path)
        assert second.restarts == 1
        os.kill(second.pid, signal.SIGKILL)  # dies again at once: the next restart waits backoff(2) = 1 s
        killed = time.monotonic()
        assert wait(lambda: _loaded(tmp_path).pid != second.pid and _loaded(tmp_path).is_running())
        assert time.monotonic() - killed >= 0.9
        assert _loaded(tmp_path).restarts == 2
        log = (tmp_path / "logs" / "supervisor.log").read_text()
        assert "streamlit started again" in log and "after killing 1 process(es) left in its group" in log
    finally:
        final = State.load(tmp_path) or state
        stack.stop(final, tmp_path)
    assert final.supervisor is not None and not final.supervisor.is_running()
    assert not final.services[0].is_running() and not final.services[0].remains()
    assert not (tmp_path / STATE_FILE).exists()


def test_up_after_a_crash_cleans_the_stale_state_instead_of_refusing(tmp_path: Path) -> None:
    """A state whose supervisor is gone (killed, crashed, rebooted) and one service half alive (its leader
    SIGKILLed, a child left in the group): `up` stops what is left and goes on (here to a port refusal)."""
    work = tmp_path / "work"
    run = work / "stack"
    state = State("sqlite")
    _service_with_a_child(run, state)
    _start_supervisor(run, state)
    assert state.supervisor is not None
    os.kill(state.supervisor.pid, signal.SIGKILL)
    os.kill(state.services[0].pid, signal.SIGKILL)
    assert wait(lambda: not state.services[0].is_running())
    leftovers = state.services[0].remains()
    assert leftovers
    with socket.socket() as blocker:  # so that `up` stops at its port check, once past the stale state
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        settings = config.load(
            environ={
                **os.environ,
                "MLOPS_PATHS__WORK_DIR": str(work),
                "MLOPS_STACK__DATABASE": "sqlite",
                "MLOPS_STACK__MLFLOW_PORT": str(port),
            }
        )
        said: list[str] = []
        with pytest.raises(PortTaken):
            stack.up(settings, say=said.append)
    assert any("no supervisor" in line and "streamlit" in line for line in said), said
    assert wait(lambda: all(gone(p) for p in leftovers))
    assert not (run / STATE_FILE).exists()


SECRET_VALUES = {
    "MLOPS_SECRETS__RELOAD_TOKEN": "reload-token-for-this-test",
    "MLOPS_SECRETS__RETRAIN_TOKEN": "retrain-token-for-this-test",
    "MLOPS_SECRETS__MAGE_OWNER_PASSWORD": "owner-password-for-this-test",
    "MLOPS_STORES__MONITORING_DB": "postgresql+psycopg2://mlops:db-password-for-this-test@127.0.0.1:1/monitoring",
}


def test_each_service_process_gets_only_its_own_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRET_VALUES.items():  # what `up` puts into its own environment
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SOME_API_TOKEN", "a-token-of-the-shell-for-this-test")
    dump = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
    seen = {}
    for name in ("postgres", "mlflow", "mage", "predictor", "streamlit", "supervisor"):
        proc = confine(services.ManagedProcess(name, dump, tmp_path / f"{name}.log", env=dict(SECRET_VALUES)))
        proc.start()
        assert proc.process is not None and proc.process.wait(timeout=30) == 0
        env = json.loads(proc.log_path.read_text())
        seen[name] = sorted(k for k, v in SECRET_VALUES.items() if any(v in value for value in env.values()))
        assert "a-token-of-the-shell-for-this-test" not in env.values()
    assert seen == {
        "postgres": [],
        "mlflow": [],
        "mage": ["MLOPS_SECRETS__RELOAD_TOKEN", "MLOPS_STORES__MONITORING_DB"],
        "predictor": ["MLOPS_SECRETS__RELOAD_TOKEN", "MLOPS_STORES__MONITORING_DB"],
        "streamlit": ["MLOPS_STORES__MONITORING_DB"],
        "supervisor": [],
    }


def test_sqlite_stores_are_created_private_and_narrowed(tmp_path: Path) -> None:
    fresh = tmp_path / "monitoring.db"
    services.private_sqlite(f"sqlite:///{fresh}")
    assert fresh.stat().st_mode & 0o777 == 0o600
    old = tmp_path / "mlflow.db"
    old.write_bytes(b"")
    old.chmod(0o644)  # what an earlier version (or a umask of 022) left
    services.private_sqlite(f"sqlite:///{old}")
    assert old.stat().st_mode & 0o777 == 0o600
    services.private_sqlite("postgresql+psycopg2://u:p@127.0.0.1:1/x")  # not a file: nothing to do


# ---- the registry, the alias and the served model agree ------------------------------------------------------


@pytest.fixture
def demo_like(tmp_path: Path, bank_csv: Path) -> tuple[config.Settings, str]:
    """What `make demo` leaves: a champion in the configured SQLite registry, and its payload."""
    settings = config.load(
        environ={
            **{k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MAGE_"))},
            "MLOPS_PATHS__WORK_DIR": str(tmp_path / "work"),
            "MLOPS_SERVING__PAYLOAD_DIR": str(tmp_path / "payload"),
        }
    )
    frame = pd.read_csv(bank_csv).head(300)
    X = features.normalise(frame, settings.dataset)
    y = preparation.labels(frame, settings)
    pipeline = Pipeline([("preprocess", features.preprocessor(settings.dataset, "logistic_regression"))])
    pipeline.steps.append(("model", DummyClassifier()))
    pipeline.fit(X, y)
    return settings, _register_champion(settings, pipeline, frame, X)


def _register_champion(settings: config.Settings, pipeline: Pipeline, frame: pd.DataFrame, X: pd.DataFrame) -> str:
    from mlops.core.serving.payload import write_payload
    from mlops.core.training import registry

    client = registry.configure(settings)
    with mlflow.start_run() as run:
        mlflow.log_dict(schema.from_training(frame, settings.dataset).to_dict(), schema.ARTIFACT)
        info = registry.log_pipeline(pipeline, X.head(20))
    tags = {"family": "dummy", "threshold": 0.5, "candidate_run_id": run.info.run_id}
    registered = registry.register(client, info.model_uri, settings.training.model_name, tags, registry.CHAMPION)
    write_payload(settings, registered.version)
    return run.info.run_id


def test_a_payload_from_another_registry_is_refused_named_or_discarded(
    demo_like: tuple[config.Settings, str], tmp_path: Path
) -> None:
    settings, run_id = demo_like
    empty = f"sqlite:///{tmp_path / 'stack-mlflow.db'}"  # the registry a fresh `up` runs: no champion
    said: list[str] = []
    with pytest.raises(ServedModelMismatch) as refused:
        check_served_model(settings, empty, said.append)
    message = str(refused.value)
    assert f"v1 (run {run_id})" in message and "has no champion" in message
    assert "MLOPS_STACK__DATABASE=sqlite python -m mlops up" in message and "--discard-served-model" in message
    assert check_served_model(settings, settings.tracking_uri, said.append) is None  # its own registry
    assert check_served_model(settings, empty, said.append, discard=True) is None
    payload = Path(settings.serving.payload_dir)
    assert not (payload / "model.json").exists()
    assert list(tmp_path.glob("payload.discarded-*/model.json"))


def test_a_payload_of_the_same_version_number_from_another_run_is_replaced(
    demo_like: tuple[config.Settings, str], tmp_path: Path
) -> None:
    """v1 of another registry is not v1 of this one: the run decides."""
    settings, _ = demo_like
    card = json.loads((Path(settings.serving.payload_dir) / "model.json").read_text())
    card["run_id"] = "0" * 32
    (Path(settings.serving.payload_dir) / "model.json").write_text(json.dumps(card))
    said: list[str] = []
    assert check_served_model(settings, settings.tracking_uri, said.append) == "1"
    assert "not this registry's champion v1" in said[0]


def test_commands_that_deploy_refuse_beside_a_stack_on_another_registry(
    tmp_path: Path, bank_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlops.core.platform import cli

    work = tmp_path / "work"
    run = work / "stack"
    sleeper = subprocess.Popen(["sleep", "900"], start_new_session=True)  # stands for the stack's MLflow
    try:
        created = psutil.Process(sleeper.pid).create_time()
        State("sqlite", [Service("mlflow", sleeper.pid, created, "http://127.0.0.1:1", "", "")]).save(run)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MAGE_"))},
            "MLOPS_PATHS__WORK_DIR": str(work),
            "MLOPS_DATASET__SOURCE__PATH": str(bank_csv),
        }
        result = mlops("demo", env=env, timeout=300)  # as a user runs it
        assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
        assert "the native stack is up" in result.stderr and "python -m mlops down" in result.stderr
        for name in [k for k in os.environ if k.startswith(("MLOPS_", "MAGE_"))]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        for command in (["deploy"], ["rollback"], ["run", "retrain"], ["run", "deploy"], ["payload"]):
            assert cli.main(command) == 2, command
            assert "the native stack is up" in capsys.readouterr().err, command
        pointed = config.load(environ={**env, "MLOPS_STORES__TRACKING_URI": "http://127.0.0.1:1"})
        assert foreign_to_running_stack(pointed) is None  # a shell pointed at the stack (stack.env) may deploy
    finally:
        sleeper.kill()
        sleeper.wait()


# ---- bounded input ---------------------------------------------------------------------------------------------


def test_a_broken_parquet_file_is_refused_by_name_with_exit_2(tmp_path: Path, bank_csv: Path) -> None:
    good = tmp_path / "good.parquet"
    pd.read_csv(bank_csv).head(50).to_parquet(good)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet at all")
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MAGE_"))},
        "MLOPS_PATHS__WORK_DIR": str(tmp_path / "work"),
    }
    result = mlops("score", str(garbage), str(tmp_path / "out.parquet"), env=env, timeout=300)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert str(garbage) in result.stderr and "not a readable Parquet file" in result.stderr
    assert "Traceback" not in result.stderr
    for broken in (garbage, truncated):  # the same check, in process
        with pytest.raises(DataValidationError, match="not a readable Parquet file"):
            batch_scoring.read_table(broken, config.load().dataset)


def test_the_apps_upload_is_bounded_before_it_is_parsed() -> None:
    import streamlit.config as st_config

    from mlops.app import ui

    settings = config.load()
    header = b"age,job\n"
    limit = settings.serving.max_batch_rows
    assert ui.upload_problem(header + b"41,admin.\n" * 10, settings) is None
    too_many = ui.upload_problem(header + b"1,a\n" * (limit + 1), settings)
    assert too_many is not None and f"{limit + 1:,} rows" in too_many and "python -m mlops score" in too_many
    too_big = ui.upload_problem(b"x" * (ui.MAX_UPLOAD_MB * 1024 * 1024 + 1), settings)
    assert too_big is not None and f"at most {ui.MAX_UPLOAD_MB} MB" in too_big
    # Streamlit reads mlops/app/.streamlit/config.toml beside the entry script, natively and in the image
    entry = ROOT / "mlops" / "app" / "Home.py"
    saved = st_config._main_script_path
    try:
        st_config._main_script_path = str(entry)
        st_config.get_config_options(force_reparse=True)
        assert st_config.get_option("server.maxUploadSize") == ui.MAX_UPLOAD_MB
    finally:
        st_config._main_script_path = saved
        st_config.get_config_options(force_reparse=True)
