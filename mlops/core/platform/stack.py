"""``python -m mlops up | down | status``: the compose stack's services as local processes.

``up`` starts, in order, PostgreSQL (the system binaries, an embedded server, or none in the all-SQLite
mode), the MLflow server, the Mage server (its database bootstrapped with the pinned API triggers first),
the predictor under gunicorn, Streamlit, and Grafana when a ``grafana`` binary is on PATH. Each must
answer its health check before the next starts. Everything lives in the run folder
``<work_dir>/stack``: ``state.json`` (pid and start time of every process group started), ``logs/``,
``secrets.env`` (generated secrets, mode 0600) and ``stack.env`` (the environment that points a shell
at this stack). ``down`` stops exactly the process groups ``state.json`` names, after checking each pid
still belongs to the process that was started; ``status`` asks every service's health endpoint.

``up`` leaves a supervisor running (:mod:`mlops.core.platform.stack_supervisor`): a service that dies is started
again, with backoff, as compose's restart policy does. A state whose supervisor is gone (a crash, a reboot, a
kill) is stale: ``up`` stops what is left of it and starts afresh. Each service's environment holds only the
secrets :data:`~mlops.core.platform.stack_environment.SERVICE_SECRETS` gives it. Before the predictor starts, the
model its payload holds must be the champion of the registry this stack runs
(:func:`~mlops.core.platform.stack_served_model.check_served_model`), else ``up`` refuses and says why.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests
from rich.table import Table

from mlops.core import config, services
from mlops.core.config import Settings
from mlops.core.monitoring import store
from mlops.core.platform.local_postgres import (
    choose_database,
    database_urls,
    sqlite_urls,
    start_embedded_postgres,
    start_system_postgres,
    wait_postgres,
)
from mlops.core.platform.stack_environment import confine, service_environment
from mlops.core.platform.stack_errors import StackError
from mlops.core.platform.stack_ports import check_ports, planned_ports
from mlops.core.platform.stack_processes import (
    grafana_binary,
    grafana_process,
    mlflow_process,
    streamlit_process,
    supervisor_process,
)
from mlops.core.platform.stack_served_model import check_served_model
from mlops.core.platform.stack_state import (
    ENV_FILE,
    SECRETS_FILE,
    STATE_FILE,
    Service,
    State,
    run_folder,
    stack_secrets,
)
from mlops.core.serving import native_predictor

HEALTH_TIMEOUT = {"postgres": 60.0, "mlflow": 180.0, "mage": 300.0, "predictor": 120.0, "streamlit": 120.0}


# ---- the stack ------------------------------------------------------------------------------------------


def _spec(proc: services.ManagedProcess) -> dict[str, object]:
    return {"command": proc.command, "env": proc.env, "cwd": str(proc.cwd) if proc.cwd else None}


def _record(proc: services.ManagedProcess, url: str, health: str) -> Service:
    created = psutil.Process(proc.pid).create_time()
    return Service(proc.name, proc.pid, created, url, health, str(proc.log_path), spec=_spec(proc))


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def healthy(service: Service) -> bool:
    if not service.is_running():
        return False
    if service.health.startswith("http"):
        return _http_ok(service.health)
    return services.postgres_reachable(service.health)


def launch(state: State, run: Path, proc: services.ManagedProcess, url: str, health: str) -> services.ManagedProcess:
    """Start ``proc`` with its own secrets only, and record it at once, so that a failure later still stops it."""
    confine(proc).start()
    state.services.append(_record(proc, url, health))
    state.save(run)
    return proc


def up(settings: Settings, say: Callable[[str], None] = print, discard_served_model: bool = False) -> State:
    """Start the stack; on any failure stop what this call started and raise."""
    run = run_folder(settings)
    run.mkdir(parents=True, exist_ok=True)
    previous = State.load(run)
    if previous is not None:
        if previous.supervised():
            return _already_up(previous, run, say)
        left = [s.name for s in previous.services if s.is_running() or s.remains()]
        if left:
            say(
                f"a previous `up` left {', '.join(left)} running with no supervisor (it crashed or was killed): "
                "stopping what is left of it, then starting afresh"
            )
        stop(previous, run)
    if (pid := native_predictor.stop(settings)) is not None:
        say(f"stopped the predictor deploy had started (pid {pid}): the stack runs its own on the same champion")
    database = choose_database(settings, run)
    check_ports(planned_ports(settings, database))
    keys = stack_secrets(run, dict(os.environ))
    state = State(database)
    state.save(run)
    started = time.monotonic()
    try:
        _start_all(
            settings,
            run,
            state,
            keys,
            lambda message: say(f"{message} ({time.monotonic() - started:.0f} s)"),
            discard_served_model,
        )
    except BaseException as exc:
        stop(state, run)
        if isinstance(exc, StackError | services.ServiceError) or not isinstance(exc, Exception):
            raise
        raise StackError(f"{exc.__class__.__name__}: {exc}") from exc
    return state


def _already_up(state: State, run: Path, say: Callable[[str], None], timeout: float = 120.0) -> State:
    """The stack runs under its supervisor: wait (a while) for a service it is restarting to be healthy."""
    deadline = time.monotonic() + timeout
    while not all(healthy(s) for s in state.services):
        if time.monotonic() > deadline:
            sick = [s.name for s in state.services if not healthy(s)]
            raise StackError(
                f"the stack is up (run folder {run}) but {', '.join(sick)} is not healthy after {timeout:.0f} s "
                f"although its supervisor restarts what exits: see `python -m mlops status` and {run / 'logs'}"
            )
        time.sleep(2)
        state = State.load(run) or state  # the supervisor records a restarted service's new pid
    say(f"the stack is already up (run folder {run})")
    return state


def _start_all(
    settings: Settings,
    run: Path,
    state: State,
    keys: dict[str, str],
    say: Callable[[str], None],
    discard_served_model: bool = False,
) -> None:
    urls: dict[str, str]
    server_url = ""
    if state.database == "sqlite":
        urls = sqlite_urls(settings, run)
    else:
        if state.database == "postgres":
            pg, server_url = start_system_postgres(settings, run, keys["POSTGRES_PASSWORD"])
            confine(pg)
            state.services.append(_record(pg, f"127.0.0.1:{settings.stack.postgres_port}", server_url))
            state.services[-1].signal = int(signal.SIGINT)
            state.save(run)
            wait_postgres(server_url, pg, HEALTH_TIMEOUT["postgres"])
        else:
            pid, server_url = start_embedded_postgres(run)
            log = run / "embedded-pgdata" / "log"
            state.services.append(
                Service(
                    "postgres",
                    pid,
                    psutil.Process(pid).create_time(),
                    "embedded",
                    server_url,
                    str(log),
                    int(signal.SIGINT),
                    spec={"embedded": str(run / "embedded-pgdata")},
                )
            )
            state.save(run)
        urls = database_urls(server_url)
        say(f"postgres ({state.database}) is up")
    for url in urls.values():
        services.private_sqlite(url)  # request data and webhook bodies: 0600 before anything writes them
    store.migrate(urls["monitoring"])
    env = service_environment(settings, urls, keys)
    services.write_private(run / ENV_FILE, "".join(f"{k}={v}\n" for k, v in env.items()))
    # This process exists to start the stack: its one-off children (Mage's bootstrap) inherit the stack's env;
    # the servers get only their own secrets (confine).
    os.environ.update(env)
    stacked = config.load(settings.source_file, environ={**os.environ, **env})
    replace_payload = check_served_model(stacked, urls["mlflow"], say, discard_served_model, settings.tracking_uri)

    # Servers that need only the database start together (their imports dominate on a small machine);
    # the predictor waits for MLflow, which tells it the champion. Each must then answer its health check.
    mlflow_url = env["MLOPS_STORES__TRACKING_URI"]
    mlflow = launch(state, run, mlflow_process(stacked, run, urls, env), mlflow_url, f"{mlflow_url}/health")

    from mlops.core.lifecycle import deploy
    from mlops.core.platform import orchestration
    from mlops.core.serving import predictor_server  # local imports: heavy, and only `up` needs them

    orchestration.bootstrap(stacked, urls["mage"])
    mage_url = stacked.orchestration.mage_url.rstrip("/")
    mage = orchestration.mage_server(stacked, urls["mage"], run / "logs" / "mage.log")
    mage.env.update(env)
    launch(state, run, mage, mage_url, f"{mage_url}/api/status")
    app_url = f"http://127.0.0.1:{stacked.stack.streamlit_port}"
    app = launch(state, run, streamlit_process(stacked, run, env), app_url, f"{app_url}/_stcore/health")

    services.wait_http(f"{mlflow_url}/health", mlflow, timeout=HEALTH_TIMEOUT["mlflow"])
    say(f"mlflow is up at {mlflow_url}")
    if replace_payload is not None:
        from mlops.core.serving.payload import write_payload

        write_payload(stacked, replace_payload)
    else:
        deploy.payload_for_champion(stacked)
    predictor = predictor_server.predictor_process(stacked, log_path=run / "logs" / "predictor.log")
    predictor.env.update(env)
    serving_url = stacked.serving.url.rstrip("/")
    launch(state, run, predictor, serving_url, f"{serving_url}/health")
    for name, proc, url, health in (
        ("mage", mage, mage_url, f"{mage_url}/api/status"),
        ("streamlit", app, app_url, f"{app_url}/_stcore/health"),
        ("predictor", predictor, serving_url, f"{serving_url}/health"),
    ):
        services.wait_http(health, proc, timeout=HEALTH_TIMEOUT[name])
        say(f"{name} is up at {url}")
    login = stacked.orchestration.mage_owner_email
    say(f"mage login: {login}, password MLOPS_SECRETS__MAGE_OWNER_PASSWORD in {run / SECRETS_FILE}")

    if state.database == "sqlite":
        state.notes["grafana"] = "not started: the dashboards need PostgreSQL (stack.database is sqlite)"
    elif grafana_binary() is None:
        state.notes["grafana"] = "not installed here (no `grafana` on PATH): run it with `docker compose up grafana`"
    else:
        grafana_url = f"http://127.0.0.1:{stacked.stack.grafana_port}"
        health = f"{grafana_url}/api/health"
        grafana = launch(state, run, grafana_process(stacked, run, env, server_url, keys), grafana_url, health)
        services.wait_http(health, grafana, timeout=120)
        say(f"grafana is up at {grafana_url}")
    supervisor = confine(supervisor_process(stacked, run)).start()
    state.supervisor = Service(
        "supervisor", supervisor.pid, psutil.Process(supervisor.pid).create_time(), "", "", str(supervisor.log_path)
    )
    state.save(run)
    say("the supervisor restarts a service that exits (logs/supervisor.log)")


def stop(state: State, run: Path, timeout: float = 30.0) -> list[str]:
    """Stop the recorded process groups; skip any whose pid is no longer the process that was started.

    The servers are signalled together (each shuts down on its own clock), PostgreSQL last, once its
    clients are gone. Returns what was stopped, each with the seconds it took to go.
    """
    began = time.monotonic()
    if stop_supervisor(state, timeout):
        state = State.load(run) or state  # the pids it last recorded (a service it started again)
    for service in state.services:  # a leader gone, its group left (an orphaned gunicorn worker): as a crash would
        if not service.is_running():
            for process in service.remains():
                with contextlib.suppress(psutil.Error):
                    process.kill()
    running = [s for s in reversed(state.services) if s.is_running()]
    servers = [s for s in running if s.name != "postgres"]
    stopped = []
    for service in servers:
        _signal_group(service.pid, service.signal)
    for service in servers:
        services.stop_group(service.pid, timeout)
        stopped.append(f"{service.name} ({time.monotonic() - began:.0f} s)")
    for service in running:
        if service.name != "postgres":
            continue
        if service.url == "embedded":
            _stop_postmaster(service, timeout)
        else:
            _signal_group(service.pid, service.signal)
            services.stop_group(service.pid, timeout)
        stopped.append(f"{service.name} ({time.monotonic() - began:.0f} s)")
    (run / STATE_FILE).unlink(missing_ok=True)
    return stopped


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(pid), sig)


def _stop_postmaster(service: Service, timeout: float) -> None:
    """The embedded server is pgserver's daemon, not a group of ours: fast-shutdown its postmaster."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(service.pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while service.is_running() and time.monotonic() < deadline:
        time.sleep(0.2)
    if service.is_running():
        os.kill(service.pid, signal.SIGKILL)


def stop_supervisor(state: State, timeout: float = 30.0) -> bool:
    """Stop the supervisor first, so that nothing is restarted while the services stop."""
    if state.supervisor is None or not state.supervisor.is_running():
        return False
    services.stop_group(state.supervisor.pid, timeout)
    return True


def down(settings: Settings) -> list[str]:
    """Stop what ``up`` started and the predictor deploy started natively, whoever started either."""
    run = run_folder(settings)
    state = State.load(run)
    stopped = []
    if state is not None:
        if stop_supervisor(state):
            stopped.append("supervisor")
        state = State.load(run) or state  # the pids it last recorded
        stopped += stop(state, run)
    if (pid := native_predictor.stop(settings)) is not None:
        stopped.append(f"predictor started by deploy (pid {pid})")
    return stopped


@dataclass
class Health:
    name: str
    url: str
    status: str  # healthy, unhealthy, stopped, not started
    detail: str = ""


def status(settings: Settings) -> list[Health]:
    """Every service ``up`` started, and the predictor deploy started natively."""
    rows = []
    if (deployed := native_predictor.running(settings)) is not None:
        url = settings.serving.url.rstrip("/")
        ok = _http_ok(f"{url}/health")
        detail = f"started by deploy, pid {deployed.pid}; " + (_readiness(url) if ok else "no answer")
        rows.append(Health("predictor", url, "healthy" if ok else "unhealthy", detail))
    state = State.load(run_folder(settings))
    if state is None:
        return rows
    for service in state.services:
        if not service.is_running():
            rows.append(Health(service.name, service.url, "stopped", f"log: {service.log}"))
            continue
        ok = healthy(service)
        detail = (_readiness(service.url) if service.name == "predictor" else "") if ok else f"log: {service.log}"
        rows.append(Health(service.name, service.url, "healthy" if ok else "unhealthy", detail))
    rows.extend(Health(name, "", "not started", note) for name, note in state.notes.items())
    restarts = ", ".join(f"{s.name} {s.restarts}x" for s in state.services if s.restarts)
    if state.supervisor is not None:
        ok = state.supervisor.is_running()
        detail = f"pid {state.supervisor.pid}; restarted: {restarts or 'nothing'}" if ok else "gone: `up` starts afresh"
        rows.append(Health("supervisor", "", "healthy" if ok else "stopped", detail))
    return rows


def _readiness(url: str) -> str:
    with contextlib.suppress(requests.RequestException, ValueError):
        body = requests.get(f"{url}/ready", timeout=5).json()
        return "ready" if body.get("ready") else f"not ready: {body.get('reason')}"
    return ""


def status_table(rows: list[Health]) -> Table:
    table = Table(title="the stack")
    for column in ("service", "url", "status", "detail"):
        table.add_column(column)
    colour = {"healthy": "green", "unhealthy": "red", "stopped": "red", "not started": "yellow"}
    for row in rows:
        table.add_row(row.name, row.url, f"[{colour[row.status]}]{row.status}[/]", row.detail)
    return table
