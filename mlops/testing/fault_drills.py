"""Fault drills of round 2 (issue #25), shared by ``tests/reliability/test_faults_round2.py`` (small sizes,
asserted) and the soak (larger sizes, measured):

- :func:`reload_storm`: many correct-token ``POST /reload`` calls at once while clients score; reloads must
  coalesce and serving keep its throughput.
- :func:`spool_full`: the spool disk full (database up), then the database down with a tiny spool disk; every
  answered prediction must be logged, the rest refused with a 503 that says why, and the log must resume by
  itself.
- :func:`master_kill`: the gunicorn master SIGKILLed under load; its orphaned workers must free the port and
  exit within seconds, and no answered prediction may be lost. ``recovered_seconds`` is measured when the
  caller passes what brings a predictor back (the native stack's supervision, or a test starting one).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

from mlops.testing.drills import ThrowawayPostgres, logged_rows, worker_pids

# ---- a time-bounded load -----------------------------------------------------------------------------------


@dataclass
class TimedLoad:
    """What ``threads`` clients scoring single records for a while got back."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # connection failures and timeouts, by exception name
    request_ids: list[str] = field(default_factory=list)  # answered (200)
    refusals: list[dict[str, Any]] = field(default_factory=list)  # non-200 answers: status and JSON body
    seconds: float = 0.0

    @property
    def answered(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def throughput(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0


def timed_load(
    url: str,
    records: list[dict[str, Any]],
    seconds: float,
    threads: int = 4,
    batch: int = 1,
    during: Callable[[], None] | None = None,
    timeout: float = 30.0,
) -> TimedLoad:
    """``threads`` clients POST ``batch`` records at a time to ``/predict`` for ``seconds``; ``during`` runs in
    the caller's thread meanwhile."""
    result = TimedLoad()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(worker: int) -> None:
        session = requests.Session()
        i = 0
        while time.monotonic() < stop_at:
            start = (worker * 7919 + i * batch) % len(records)
            body: Any = records[start] if batch == 1 else [records[(start + k) % len(records)] for k in range(batch)]
            i += 1
            try:
                response = session.post(f"{url}/predict", json=body, timeout=timeout)
            except requests.RequestException as exc:
                with lock:
                    result.errors[exc.__class__.__name__] += 1
                session.close()
                session = requests.Session()
                time.sleep(0.05)
                continue
            with lock:
                result.statuses[response.status_code] += 1
                if response.status_code == 200:
                    result.request_ids.append(response.json()["request_id"])
                else:
                    try:
                        answer = response.json()
                    except ValueError:
                        answer = {"text": response.text[:200]}
                    result.refusals.append({"status": response.status_code, "body": answer})
            if response.status_code != 200:
                time.sleep(0.02)  # a refusing server is not hammered
        session.close()

    workers = [threading.Thread(target=client, args=(w,), name=f"timed-load-{w}") for w in range(threads)]
    began = time.monotonic()
    for worker in workers:
        worker.start()
    if during is not None:
        during()
    for worker in workers:
        worker.join()
    result.seconds = time.monotonic() - began
    return result


def wait_logged(database: str, request_ids: list[str], expected: int, timeout: float) -> int:
    """Rows of these requests in the prediction log once it holds ``expected`` of them (or the timeout)."""
    deadline = time.monotonic() + timeout
    logged = logged_rows(database, request_ids) if request_ids else 0
    while logged < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        logged = logged_rows(database, request_ids)
    return logged


# ---- reload storm ------------------------------------------------------------------------------------------


def reload_storm(
    url: str,
    token: str,
    arbiter_pid: int,
    records: list[dict[str, Any]],
    calls: int = 200,
    concurrency: int = 20,
    seconds: float = 8.0,
    threads: int = 4,
    storm_after: float = 1.0,
) -> dict[str, Any]:
    """Clients score for ``seconds`` undisturbed, then again while ``calls`` correct-token ``POST /reload`` go
    out ``concurrency`` at a time, then (once the old workers are gone) undisturbed again.
    ``throughput_share`` is the storm window's answered requests per second over the mean of the other two;
    ``lost`` the scoring requests that got no 200; ``reloads_started`` the reload calls that started one (the
    others answer that one is in progress)."""
    baseline = timed_load(url, records, seconds, threads)
    answers: list[tuple[int, dict[str, Any], float]] = []
    failures: Counter[str] = Counter()
    lock = threading.Lock()
    before = worker_pids(arbiter_pid)

    def storm() -> None:
        time.sleep(storm_after)
        remaining = iter(range(calls))

        def caller() -> None:
            session = requests.Session()
            for _ in remaining:  # a shared iterator: ``concurrency`` callers take the calls between them
                began = time.monotonic()
                try:
                    response = session.post(f"{url}/reload", headers={"Authorization": f"Bearer {token}"}, timeout=10)
                except requests.RequestException as exc:
                    with lock:
                        failures[exc.__class__.__name__] += 1
                    continue
                try:
                    body = response.json()
                except ValueError:
                    body = {}
                with lock:
                    answers.append((response.status_code, body, time.monotonic() - began))
            session.close()

        callers = [threading.Thread(target=caller, name=f"reload-{i}") for i in range(concurrency)]
        for thread in callers:
            thread.start()
        for thread in callers:
            thread.join()

    stormy = timed_load(url, records, seconds, threads, during=storm)
    deadline = time.monotonic() + 30
    while worker_pids(arbiter_pid) & before and time.monotonic() < deadline:
        time.sleep(0.2)
    after = timed_load(url, records, seconds, threads)  # with the drift of a shared machine's load, the
    undisturbed = (baseline.throughput + after.throughput) / 2  # baseline is the mean of before and after
    started = sum(1 for status, body, _ in answers if status == 202 and not body.get("already_in_progress"))
    return {
        "reload_calls": calls,
        "reload_statuses": {str(k): v for k, v in sorted(Counter(s for s, _, _ in answers).items())},
        "reload_failures": dict(failures),  # timeouts, dropped connections
        "reload_answer_max_ms": round(max((t for *_, t in answers), default=0.0) * 1000, 1),
        "reloads_started": started,
        "workers_replaced": not (worker_pids(arbiter_pid) & before),
        "baseline_rps": round(baseline.throughput, 1),
        "after_rps": round(after.throughput, 1),
        "storm_rps": round(stormy.throughput, 1),
        "throughput_share": round(stormy.throughput / undisturbed, 3) if undisturbed else 0.0,
        "lost": sum(stormy.statuses.values()) - stormy.answered + sum(stormy.errors.values()),
        "load_errors": dict(stormy.errors),
    }


# ---- a full spool disk -------------------------------------------------------------------------------------


def fill(folder: Path, name: str = "filler") -> Path:
    """Fill the file system of ``folder`` with one file until it refuses (ENOSPC)."""
    path = folder / name
    chunk = b"\0" * 4096
    with path.open("wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(chunk)
    return path


def left_behind(spool: Path) -> list[str]:
    """What the prediction log should not leave once everything is written: spool, partial and claimed files,
    journals (a journal is deleted once all of its rows are written)."""
    return sorted(p.name for p in spool.iterdir() if not p.name.startswith("filler"))


def ready(url: str) -> tuple[int, dict[str, Any]]:
    response = requests.get(f"{url}/ready", timeout=10)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {}


def _clear(refusals: list[dict[str, Any]]) -> bool:
    """Every refusal is a 503 with a JSON error that says why."""
    return all(r["status"] == 503 and isinstance(r["body"].get("error"), str) for r in refusals)


def spool_full(
    url: str,
    spool: Path,
    database: str,
    postgres: ThrowawayPostgres,
    records: list[dict[str, Any]],
    seconds: float = 4.0,
    threads: int = 4,
    batch: int = 20,
    settle_seconds: float = 90.0,
) -> dict[str, Any]:
    """``spool`` is a small file system of its own (a tmpfs) that the predictor spools to.

    1. Database up, spool disk full: clients score for ``seconds``; /ready is read meanwhile; then the
       disk is freed.
    2. Database down: clients score ``batch``-record requests for ``seconds`` (the journal and the spool fill
       the disk); then the database comes back.
    3. Once /ready answers 200 again (``ready_again_seconds`` after the database is back; no restart),
       clients score for ``seconds`` again, and everything must be written.

    ``answered`` / ``logged`` / ``lost`` count records of 200 answers over all phases; ``refused`` the
    requests answered otherwise; ``clear_refusals`` whether each was a 503 with a JSON error;
    ``recovered_without_restart`` whether phase 3 was answered and logged in full and nothing was left
    behind in the spool."""
    outcome: dict[str, Any] = {}
    readiness: list[tuple[int, dict[str, Any]]] = []

    def watch_ready() -> None:
        time.sleep(seconds / 2)
        readiness.append(ready(url))

    filler = fill(spool)
    try:
        full = timed_load(url, records, seconds, threads, during=watch_ready)
    finally:
        filler.unlink()
    outcome["disk_full"] = {"statuses": dict(full.statuses), "ready_while_full": readiness[-1] if readiness else None}
    time.sleep(1.0)
    outcome["ready_after_freeing"] = ready(url)[0]

    readiness.clear()
    postgres.stop()
    try:
        down = timed_load(url, records, seconds, threads, batch=batch, during=watch_ready)
        outcome["db_down"] = {"statuses": dict(down.statuses), "ready_while_full": readiness[-1] if readiness else None}
    finally:
        postgres.start()
    back = time.monotonic()
    while ready(url)[0] != 200 and time.monotonic() < back + 60:  # by itself: nothing is restarted
        time.sleep(0.2)
    outcome["ready_again_seconds"] = round(time.monotonic() - back, 2)
    after = timed_load(url, records, seconds, threads)
    outcome["after_recovery"] = {"statuses": dict(after.statuses)}
    answered = full.answered + down.answered * batch + after.answered
    ids = full.request_ids + down.request_ids + after.request_ids
    logged = wait_logged(database, ids, answered, settle_seconds)
    deadline = time.monotonic() + 30
    while left_behind(spool) and time.monotonic() < deadline:
        time.sleep(0.5)
    outcome["left_behind"] = left_behind(spool)
    refusals = full.refusals + down.refusals + after.refusals
    after_logged = logged_rows(database, after.request_ids) if after.request_ids else 0
    outcome.update(
        answered=answered,
        logged=logged,
        lost=max(answered - logged, 0),
        refused=len(refusals),
        clear_refusals=_clear(refusals),
        connection_errors=sum((full.errors + down.errors + after.errors).values()),
        refusal_sample=refusals[0]["body"] if refusals else None,
        recovered_without_restart=bool(
            after.answered > 0
            and after.answered == sum(after.statuses.values())
            and after_logged == after.answered
            and not outcome["left_behind"]
        ),
    )
    return outcome


# ---- the gunicorn master SIGKILLed -------------------------------------------------------------------------


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def master_kill(
    url: str,
    arbiter_pid: int,
    database: str,
    records: list[dict[str, Any]],
    restart: Callable[[], Any] | None = None,
    seconds: float = 3.0,
    threads: int = 4,
    kill_after: float = 1.0,
    wait_seconds: float = 45.0,
) -> dict[str, Any]:
    """SIGKILL the gunicorn master while clients score (keep-alive connections, as real clients hold).

    ``orphans_exited_seconds``: from the kill until no worker of it is left; ``port_free_seconds``: until the
    port can be bound again; then ``restart`` (if given) brings a predictor back on the same port and spool
    (``recovered_seconds``: kill to its /ready 200). ``lost``: records answered 200 and not in the log."""
    port = int(url.rsplit(":", 1)[1])
    workers = worker_pids(arbiter_pid)
    killed_at: list[float] = []

    def kill() -> None:
        time.sleep(kill_after)
        killed_at.append(time.monotonic())
        os.kill(arbiter_pid, signal.SIGKILL)

    result = timed_load(url, records, seconds, threads, during=kill, timeout=10)
    exited = port_at = None
    deadline = killed_at[0] + wait_seconds
    while time.monotonic() < deadline and (exited is None or port_at is None):
        if exited is None and not any(psutil.pid_exists(p) and _running(p) for p in workers):
            exited = time.monotonic() - killed_at[0]
        if port_at is None and port_free(port):
            port_at = time.monotonic() - killed_at[0]
        time.sleep(0.1)
    recovered = None
    if restart is not None:
        restart()
        while time.monotonic() < killed_at[0] + wait_seconds + 120:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/ready", timeout=2).status_code == 200:
                    recovered = time.monotonic() - killed_at[0]
                    break
            time.sleep(0.2)
    answered = result.answered
    logged = wait_logged(database, result.request_ids, answered, 60)
    return {
        "workers": len(workers),
        "answered": answered,
        "logged": logged,
        "lost": max(answered - logged, 0),
        "orphans_exited_seconds": None if exited is None else round(exited, 2),
        "port_free_seconds": None if port_at is None else round(port_at, 2),
        "recovered_seconds": None if recovered is None else round(recovered, 2),
    }


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
