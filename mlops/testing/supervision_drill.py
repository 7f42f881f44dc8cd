"""Drills of the native stack's supervision and secrets, shared by ``tests/stack`` (asserted) and the soak (measured).

- :func:`master_kill`: SIGKILL the gunicorn master of a natively supervised predictor under a light load; how long
  until it answers again (``recovered_seconds``) and how many answered requests the prediction log misses (``lost``).
- :func:`supervised_predictor`: a predictor started and supervised exactly as ``python -m mlops up`` does (its start
  spec in a run folder's ``state.json``, the stack's supervisor process on it), for a drill without the whole stack.
- :func:`secrets_in_environments`: which secrets each running service's processes hold in their environment.
- :func:`secrets_in_logs`: occurrences of secrets in every ``*.log`` under a folder.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import requests

from mlops.core import services
from mlops.core.config import Settings
from mlops.core.platform import stack
from mlops.core.platform.stack_environment import confine
from mlops.core.platform.stack_processes import supervisor_process
from mlops.core.platform.stack_state import Service, State
from mlops.testing.drills import duplicated_rows, logged_rows


def supervised_predictor(settings: Settings, run: Path, env: dict[str, str], port: int, payload: Path) -> State:
    """The predictor on ``port`` serving ``payload``, supervised as the stack supervises it; stop it with
    ``stack.stop(state, run)``. ``env``: its environment (monitoring database, reload token, ...)."""
    from mlops.core.serving import predictor_server

    run.mkdir(parents=True, exist_ok=True)
    proc = predictor_server.predictor_process(
        settings, port=port, payload_dir=payload, log_path=run / "logs" / "predictor.log", env=env
    )
    state = State("none")
    url = f"http://127.0.0.1:{port}"
    try:
        stack.launch(state, run, proc, url, f"{url}/health")
        services.wait_http(f"{url}/ready", proc, timeout=240)
        supervisor = confine(supervisor_process(settings, run)).start()
        created = psutil.Process(supervisor.pid).create_time()
        state.supervisor = Service("supervisor", supervisor.pid, created, "", "", str(supervisor.log_path))
        state.save(run)
    except BaseException:
        stack.stop(state, run)
        raise
    return state


def _predictor(run: Path) -> Service:
    state = State.load(run)
    assert state is not None, f"no state in {run}"
    return next(s for s in state.services if s.name == "predictor")


def master_kill(
    run: Path,
    url: str,
    database: str,
    records: list[dict[str, Any]],
    clients: int = 2,
    pause_seconds: float = 0.02,
    after_seconds: float = 3.0,
    timeout: float = 180.0,
) -> dict[str, Any]:
    """SIGKILL the gunicorn master of the supervised predictor recorded in ``run``'s state while ``clients``
    threads send it single records (a pause between requests: a light load). ``recovered_seconds``: from the
    kill to the first answer of the predictor the supervisor started again; ``lost``: answered records missing
    from the prediction log (``database``) once it has caught up."""
    url = url.rstrip("/")
    answered: list[str] = []
    failed = [0]
    lock = threading.Lock()
    done = threading.Event()

    def client(worker: int) -> None:
        session = requests.Session()
        i = worker
        while not done.is_set():
            try:
                response = session.post(f"{url}/predict", json=records[i % len(records)], timeout=30)
                ok = response.status_code == 200
                request_id = response.json().get("request_id") if ok else None
            except (requests.RequestException, ValueError):
                ok, request_id = False, None
                session.close()
                session = requests.Session()
            with lock:
                if ok and request_id:
                    answered.append(request_id)
                else:
                    failed[0] += 1
            i += clients
            time.sleep(pause_seconds)
        session.close()

    threads = [threading.Thread(target=client, args=(w,), name=f"master-kill-{w}") for w in range(clients)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        victim = _predictor(run)
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        recovered = None
        deadline = killed_at + timeout
        probe = records[0]
        while time.monotonic() < deadline:
            current = _predictor(run)
            if current.pid != victim.pid and current.is_running():
                try:
                    if requests.post(f"{url}/predict", json=probe, timeout=5).status_code == 200:
                        recovered = time.monotonic() - killed_at
                        break
                except requests.RequestException:
                    pass
            time.sleep(0.1)
        time.sleep(after_seconds if recovered is not None else 0)
    finally:
        done.set()
        for thread in threads:
            thread.join()
    logged = 0
    wait_until = time.monotonic() + 60
    while time.monotonic() < wait_until:
        logged = logged_rows(database, answered)
        if logged >= len(answered):
            break
        time.sleep(0.5)
    after = _predictor(run)
    return {
        "killed_pid": victim.pid,
        "new_pid": after.pid,
        "restarts": after.restarts,
        "recovered_seconds": round(recovered, 2) if recovered is not None else None,
        "answered": len(answered),
        "failed_requests": failed[0],
        "logged": logged,
        "lost": max(len(answered) - logged, 0),
        "duplicated": duplicated_rows(database, answered),
    }


def secrets_in_environments(state: State, secrets: dict[str, str]) -> dict[str, list[str]]:
    """Service -> names of the ``secrets`` (name -> value) found in the environment of any process of its group
    (a value inside another variable counts: a password inside a database URL)."""
    found: dict[str, list[str]] = {}
    for service in [*state.services, *([state.supervisor] if state.supervisor else [])]:
        if not service.is_running():
            continue
        processes = [psutil.Process(service.pid), *service.remains()]
        held: set[str] = set()
        for process in processes:
            try:
                values = list(process.environ().values())
            except psutil.Error:
                continue
            held |= {name for name, secret in secrets.items() if any(secret in value for value in values)}
        found[service.name] = sorted(held)
    return found


def secrets_in_logs(folder: Path, secrets: dict[str, str]) -> dict[str, Any]:
    """Every ``*.log`` under ``folder`` searched for every secret value: ``occurrences`` must be 0."""
    logs = sorted(folder.rglob("*.log"))
    found = []
    occurrences = 0
    for path in logs:
        text = path.read_text(errors="replace")
        for name, value in secrets.items():
            if count := text.count(value):
                occurrences += count
                found.append(f"{path}: {name} x{count}")
    return {"secrets_used": len(secrets), "logs_read": len(logs), "occurrences": occurrences, "found": found}
