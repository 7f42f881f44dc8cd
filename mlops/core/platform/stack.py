"""``python -m mlops up | down | status``: the compose stack's services as local processes.

``up`` starts, in order, PostgreSQL (the system binaries, an embedded server, or none in the all-SQLite
mode), the MLflow server, the Mage server (its database bootstrapped with the pinned API triggers first),
the predictor under gunicorn, Streamlit, and Grafana when a ``grafana`` binary is on PATH. Each must
answer its health check before the next starts. Everything lives in the run folder
``<work_dir>/stack``: ``state.json`` (pid and start time of every process group started), ``logs/``,
``secrets.env`` (generated secrets, mode 0600) and ``stack.env`` (the environment that points a shell
at this stack). ``down`` stops exactly the process groups ``state.json`` names, after checking each pid
still belongs to the process that was started; ``status`` asks every service's health endpoint.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

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
from mlops.core.platform.stack_processes import grafana_binary, grafana_process, mlflow_process, streamlit_process
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


class StackError(RuntimeError):
    """``up`` refused or failed; the message says why and what to do."""


class PortTaken(StackError):
    """A port the stack needs is in use by something else."""


# ---- ports -------------------------------------------------------------------------------------------


def mage_port(settings: Settings) -> int:
    return urlsplit(settings.orchestration.mage_url).port or 6789


def planned_ports(settings: Settings, database: str) -> dict[str, tuple[int, str]]:
    """Service -> (port, the configuration key that sets it)."""
    ports = {
        "mlflow": (settings.stack.mlflow_port, "MLOPS_STACK__MLFLOW_PORT"),
        "mage": (mage_port(settings), "MLOPS_ORCHESTRATION__MAGE_URL"),
        "predictor": (settings.serving.port, "MLOPS_SERVING__PORT (and MLOPS_SERVING__URL)"),
        "streamlit": (settings.stack.streamlit_port, "MLOPS_STACK__STREAMLIT_PORT"),
    }
    if database == "postgres":
        ports["postgres"] = (settings.stack.postgres_port, "MLOPS_STACK__POSTGRES_PORT")
    if grafana_binary() and database != "sqlite":
        ports["grafana"] = (settings.stack.grafana_port, "MLOPS_STACK__GRAFANA_PORT")
    return ports


def check_ports(ports: dict[str, tuple[int, str]]) -> None:
    taken = [
        f"port {port} ({name}) is in use: stop what listens there or set {key}"
        for name, (port, key) in ports.items()
        if services.port_in_use(port)
    ]
    seen: dict[int, str] = {}
    for name, (port, key) in ports.items():
        if port in seen:
            taken.append(f"port {port} is configured for both {seen[port]} and {name}: change {key}")
        seen[port] = name
    if taken:
        raise PortTaken("refusing to start:\n  " + "\n  ".join(taken))


# ---- the stack ------------------------------------------------------------------------------------------


def service_environment(settings: Settings, urls: dict[str, str], keys: dict[str, str]) -> dict[str, str]:
    """What every service (and a shell that sources stack.env) needs to find the others."""
    env = {
        "MLOPS_STORES__TRACKING_URI": f"http://127.0.0.1:{settings.stack.mlflow_port}",
        "MLOPS_STORES__MONITORING_DB": urls["monitoring"],
        "MLOPS_SECRETS__RELOAD_TOKEN": keys["MLOPS_SECRETS__RELOAD_TOKEN"],
        "MLOPS_SECRETS__RETRAIN_TOKEN": keys["MLOPS_SECRETS__RETRAIN_TOKEN"],
        "MLOPS_SECRETS__MAGE_OWNER_PASSWORD": keys["MLOPS_SECRETS__MAGE_OWNER_PASSWORD"],
        # the stack runs the predictor itself: deploy reloads it, never starts a second one
        "MLOPS_DEPLOY__START_PREDICTOR": "false",
        "MAGE_DATA_DIR": os.environ.get("MAGE_DATA_DIR", str(settings.work_dir / "mage_data")),
    }
    return env


def _record(proc: services.ManagedProcess, url: str, health: str) -> Service:
    return Service(proc.name, proc.pid, psutil.Process(proc.pid).create_time(), url, health, str(proc.log_path))


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


def _launch(state: State, run: Path, proc: services.ManagedProcess, url: str, health: str) -> services.ManagedProcess:
    """Start ``proc`` and record it at once, so that a failure later still stops it."""
    proc.start()
    state.services.append(_record(proc, url, health))
    state.save(run)
    return proc


def up(settings: Settings, say: Callable[[str], None] = print) -> State:
    """Start the stack; on any failure stop what this call started and raise."""
    run = run_folder(settings)
    run.mkdir(parents=True, exist_ok=True)
    previous = State.load(run)
    if previous is not None and any(s.is_running() for s in previous.services):
        if all(healthy(s) for s in previous.services):
            say(f"the stack is already up (run folder {run})")
            return previous
        raise StackError(
            f"part of a previous `up` is still running (see {run / STATE_FILE}): run `python -m mlops down` first"
        )
    if (pid := native_predictor.stop(settings)) is not None:
        say(f"stopped the predictor deploy had started (pid {pid}): the stack runs its own on the same champion")
    database = choose_database(settings, run)
    check_ports(planned_ports(settings, database))
    keys = stack_secrets(run, dict(os.environ))
    state = State(database)
    state.save(run)
    started = time.monotonic()
    try:
        _start_all(settings, run, state, keys, lambda message: say(f"{message} ({time.monotonic() - started:.0f} s)"))
    except BaseException as exc:
        stop(state, run)
        if isinstance(exc, StackError | services.ServiceError) or not isinstance(exc, Exception):
            raise
        raise StackError(f"{exc.__class__.__name__}: {exc}") from exc
    return state


def _start_all(settings: Settings, run: Path, state: State, keys: dict[str, str], say: Callable[[str], None]) -> None:
    urls: dict[str, str]
    server_url = ""
    if state.database == "sqlite":
        urls = sqlite_urls(settings, run)
    else:
        if state.database == "postgres":
            pg, server_url = start_system_postgres(settings, run, keys["POSTGRES_PASSWORD"])
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
                )
            )
            state.save(run)
        urls = database_urls(server_url)
        say(f"postgres ({state.database}) is up")
    store.migrate(urls["monitoring"])
    env = service_environment(settings, urls, keys)
    services.write_private(run / ENV_FILE, "".join(f"{k}={v}\n" for k, v in env.items()))
    # This process exists to start the stack: what it runs (Mage's bootstrap, the servers) inherits the stack's env.
    os.environ.update(env)
    stacked = config.load(settings.source_file, environ={**os.environ, **env})

    # Servers that need only the database start together (their imports dominate on a small machine);
    # the predictor waits for MLflow, which tells it the champion. Each must then answer its health check.
    mlflow_url = env["MLOPS_STORES__TRACKING_URI"]
    mlflow = _launch(state, run, mlflow_process(stacked, run, urls, env), mlflow_url, f"{mlflow_url}/health")

    from mlops.core.lifecycle import deploy
    from mlops.core.platform import orchestration
    from mlops.core.serving import predictor_server  # local imports: heavy, and only `up` needs them

    orchestration.bootstrap(stacked, urls["mage"])
    mage_url = stacked.orchestration.mage_url.rstrip("/")
    mage = orchestration.mage_server(stacked, urls["mage"], run / "logs" / "mage.log")
    mage.env.update(env)
    _launch(state, run, mage, mage_url, f"{mage_url}/api/status")
    app_url = f"http://127.0.0.1:{stacked.stack.streamlit_port}"
    app = _launch(state, run, streamlit_process(stacked, run, env), app_url, f"{app_url}/_stcore/health")

    services.wait_http(f"{mlflow_url}/health", mlflow, timeout=HEALTH_TIMEOUT["mlflow"])
    say(f"mlflow is up at {mlflow_url}")
    deploy.payload_for_champion(stacked)
    predictor = predictor_server.predictor_process(stacked, log_path=run / "logs" / "predictor.log")
    predictor.env.update(env)
    serving_url = stacked.serving.url.rstrip("/")
    _launch(state, run, predictor, serving_url, f"{serving_url}/health")
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
        grafana = _launch(state, run, grafana_process(stacked, run, env, server_url, keys), grafana_url, health)
        services.wait_http(health, grafana, timeout=120)
        say(f"grafana is up at {grafana_url}")
    state.save(run)


def stop(state: State, run: Path, timeout: float = 30.0) -> list[str]:
    """Stop the recorded process groups; skip any whose pid is no longer the process that was started.

    The servers are signalled together (each shuts down on its own clock), PostgreSQL last, once its
    clients are gone. Returns what was stopped, each with the seconds it took to go.
    """
    began = time.monotonic()
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


def down(settings: Settings) -> list[str]:
    """Stop what ``up`` started and the predictor deploy started natively, whoever started either."""
    run = run_folder(settings)
    state = State.load(run)
    stopped = [] if state is None else stop(state, run)
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
