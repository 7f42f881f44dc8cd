"""The reliability drills as plain functions, shared by ``tests/reliability`` (small sizes, asserted) and
``benchmarks/soak.py`` (``make soak``: larger sizes, measured into ``benchmarks/results/reliability.json``),
which therefore never imports ``tests/``.

- :func:`fuzz`: schemathesis cases generated from the predictor's own ``/openapi.json`` (valid and invalid
  data), each sent to the running predictor; every answer is recorded, 5xx ones kept as failures.
- :func:`load`: a bounded concurrent load on loopback; every request's id and latency.
- :class:`ThrowawayPostgres`: a PostgreSQL server of the drill alone (the system binaries, as
  ``python -m mlops up`` runs them) that may be stopped and started again on the same port and data.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import requests
import sqlalchemy as sa

from mlops.core import config, services
from mlops.core.monitoring import store
from mlops.core.platform import local_postgres

# ---- a PostgreSQL we may stop ----------------------------------------------------------------------------


class ThrowawayPostgres:
    """A PostgreSQL server on a free loopback port that a drill stops and starts again (same data)."""

    def __init__(self, run: Path) -> None:
        self.run = run
        self.port = services.free_port()
        self.password = secrets.token_hex(16)
        self.process: services.ManagedProcess | None = None
        self.server_url = ""

    def start(self) -> ThrowawayPostgres:
        if local_postgres.system_postgres_bin() is None:
            raise RuntimeError("the drills need PostgreSQL's server binaries (e.g. /usr/lib/postgresql/*/bin)")
        if not local_postgres.usable_by_postgres_user(self.run / "pgdata"):
            raise RuntimeError(f"the postgres system user cannot write {self.run / 'pgdata'}")
        base = config.load()
        ours = base.model_copy(update={"stack": base.stack.model_copy(update={"postgres_port": self.port})})
        self.process, self.server_url = local_postgres.start_system_postgres(ours, self.run, self.password)
        local_postgres.wait_postgres(self.server_url, self.process, timeout=60)
        return self

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open sessions are cut, as when the database host goes away."""
        if self.process is None or not self.process.alive():
            return
        os.killpg(os.getpgid(self.process.pid), signal.SIGINT)
        deadline = time.monotonic() + 30
        while self.process.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.process.alive():
            self.process.stop()

    def database(self, prefix: str) -> str:
        return services.create_database(self.server_url, f"{prefix}_{secrets.token_hex(4)}")


def logged_rows(url: str, request_ids: list[str] | None = None) -> int:
    """Rows in ``store.predictions`` (optionally only those of the given requests); 0 before the tables exist."""
    table = store.predictions
    query = sa.select(sa.func.count()).select_from(table)
    if request_ids is not None:
        query = query.where(table.c.request_id.in_(request_ids))
    eng = store.engine(url)
    try:
        with eng.connect() as conn:
            return int(conn.execute(query).scalar_one())
    except sa.exc.ProgrammingError:
        return 0
    finally:
        eng.dispose()


def wait_for_rows(url: str, expected: int, timeout: float = 60.0) -> int:
    """Poll the prediction log until it holds ``expected`` rows; returns what it holds at the end."""
    deadline = time.monotonic() + timeout
    count = logged_rows(url)
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        count = logged_rows(url)
    return count


def listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket of the process group led by ``pid`` and of every process it
    started (the predictor's nginx runs in a session of its own)."""
    group = os.getpgid(pid)
    pids = {p.pid for p in psutil.process_iter() if _pgid(p.pid) == group}
    with contextlib.suppress(psutil.Error):
        pids |= {child.pid for child in psutil.Process(pid).children(recursive=True)}
    return [
        (c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    ]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


# ---- load ------------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    requests_sent: int = 0
    records_sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # connection failures, by exception name
    request_ids: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def percentiles(self) -> dict[str, float]:
        values = np.array(self.latencies_ms or [0.0])
        return {f"p{q}": round(float(np.percentile(values, q)), 2) for q in (50, 90, 99)} | {
            "max": round(float(values.max()), 2)
        }

    def summary(self) -> dict[str, Any]:
        return {
            "requests_sent": self.requests_sent,
            "records_sent": self.records_sent,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "connection_errors": len(self.errors),
            "seconds": round(self.seconds, 2),
            "requests_per_second": round(self.requests_sent / self.seconds, 1) if self.seconds else None,
            "latency_ms": self.percentiles(),
        }


def load(
    url: str,
    records: list[dict[str, Any]],
    threads: int = 8,
    per_thread: int = 50,
    batch_every: int = 10,
    batch_size: int = 20,
    during: Callable[[], None] | None = None,
) -> LoadResult:
    """``threads`` clients each POST ``per_thread`` requests to ``/predict`` (every ``batch_every``-th one a
    batch of ``batch_size`` records, the others one record); ``during`` runs in the caller's thread while
    the load is on (a fault drill)."""
    result = LoadResult()
    lock = threading.Lock()

    def client(worker: int) -> None:
        session = requests.Session()
        for i in range(per_thread):
            start = (worker * per_thread + i) % len(records)
            size = batch_size if batch_every and i % batch_every == batch_every - 1 else 1
            body: Any = records[start] if size == 1 else [records[(start + k) % len(records)] for k in range(size)]
            began = time.perf_counter()
            try:
                response = session.post(f"{url}/predict", json=body, timeout=60)
            except requests.RequestException as exc:
                with lock:
                    result.requests_sent += 1
                    result.errors.append(exc.__class__.__name__)
                continue
            elapsed = (time.perf_counter() - began) * 1000
            with lock:
                result.requests_sent += 1
                result.statuses[response.status_code] += 1
                result.latencies_ms.append(elapsed)
                if response.status_code == 200:
                    result.records_sent += size
                    result.request_ids.append(response.json()["request_id"])
        session.close()

    workers = [threading.Thread(target=client, args=(w,), name=f"load-{w}") for w in range(threads)]
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    if during is not None:
        during()
    for worker in workers:
        worker.join()
    result.seconds = time.perf_counter() - began
    return result


# ---- a worker killed under load --------------------------------------------------------------------------


def duplicated_rows(url: str, request_ids: list[str]) -> int:
    """Rows of these requests beyond one per (request, record): a replay that wrote a row twice."""
    table = store.predictions
    pairs = (
        sa.select(table.c.request_id, table.c.record_index, sa.func.count().label("n"))
        .where(table.c.request_id.in_(request_ids))
        .group_by(table.c.request_id, table.c.record_index)
        .subquery()
    )
    eng = store.engine(url)
    try:
        with eng.connect() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(pairs.c.n - 1), 0))).scalar_one())
    finally:
        eng.dispose()


def worker_pids(arbiter_pid: int) -> set[int]:
    """The gunicorn workers of an arbiter (forked: same executable; not the nginx it may run)."""
    try:
        arbiter = psutil.Process(arbiter_pid)
        return {child.pid for child in arbiter.children() if child.exe() == arbiter.exe()}
    except psutil.Error:
        return set()


def worker_kill(
    url: str, arbiter_pid: int, database: str, records: list[dict[str, Any]], **load_args: Any
) -> dict[str, Any]:
    """SIGKILL one gunicorn worker of the predictor in the middle of a load; then every answered record must
    be in the prediction log exactly once (its journal is replayed by the workers that live on)."""
    killed: list[int] = []

    def kill_one() -> None:
        time.sleep(0.5)
        worker = min(worker_pids(arbiter_pid))  # a gunicorn worker, never the nginx the arbiter also started
        killed.append(worker)
        os.kill(worker, signal.SIGKILL)

    result = load(url, records, during=kill_one, **load_args)
    answered = result.records_sent
    logged = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        logged = logged_rows(database, result.request_ids)
        if logged >= answered:
            break
        time.sleep(0.5)
    return {
        "killed_worker": killed[0] if killed else None,
        "requests_sent": result.requests_sent,
        "failed_requests": result.requests_sent - result.statuses.get(200, 0),
        "answered": answered,
        "logged": logged,
        "lost": max(answered - logged, 0),
        "duplicated": duplicated_rows(database, result.request_ids),
    }


# ---- slow clients ----------------------------------------------------------------------------------------


@dataclass
class SlowClientsResult:
    slow_connections: int
    slow_still_open: int  # slow connections the server kept (it may close some: then they are not starving it)
    normal: LoadResult
    within_ms: float

    def summary(self) -> dict[str, Any]:
        answered = sum(1 for ms in self.normal.latencies_ms if ms <= self.within_ms)
        return {
            "slow_connections": self.slow_connections,
            "slow_still_open": self.slow_still_open,
            "normal_requests": self.normal.requests_sent,
            "answered_within_ms": self.within_ms,
            "answered_share": round(answered / self.normal.requests_sent, 4) if self.normal.requests_sent else 0.0,
            "statuses": {str(k): v for k, v in sorted(self.normal.statuses.items())},
            "p99_ms": self.normal.percentiles()["p99"],
        }


def slow_clients(
    url: str,
    records: list[dict[str, Any]],
    slow: int = 50,
    threads: int = 4,
    per_thread: int = 50,
    byte_every_seconds: float = 2.0,
    within_ms: float = 1000.0,
) -> SlowClientsResult:
    """``slow`` connections each send a ``POST /predict`` header, then its body one byte every
    ``byte_every_seconds`` (slowloris); meanwhile ``threads`` normal clients send ``per_thread`` single-record
    requests each. The share of normal requests answered within ``within_ms`` is what the drill measures."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps(records[0]).encode()
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sockets: list[socket.socket] = []
    for _ in range(slow):
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(head)
        sockets.append(sock)
    stop = threading.Event()
    open_sockets = list(sockets)

    def trickle() -> None:
        sent = 0
        while not stop.wait(byte_every_seconds) and sent < len(body) - 1:  # never the last byte
            for sock in list(open_sockets):
                try:
                    sock.sendall(body[sent : sent + 1])
                except OSError:
                    open_sockets.remove(sock)
            sent += 1

    trickler = threading.Thread(target=trickle, name="slowloris")
    trickler.start()
    try:
        time.sleep(1.0)  # the slow connections are in the server before the normal ones arrive
        normal = load(url, records, threads=threads, per_thread=per_thread, batch_every=0)
    finally:
        stop.set()
        trickler.join()
        still_open = len(open_sockets)
        for sock in sockets:
            sock.close()
    return SlowClientsResult(slow, still_open, normal, within_ms)


# ---- fuzz ------------------------------------------------------------------------------------------------


@dataclass
class FuzzResult:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # "METHOD path -> status: body", 5xx answers
    unclear_errors: list[str] = field(default_factory=list)  # 4xx answers without a JSON {"error": ...}
    scored: dict[str, int] = field(default_factory=dict)  # request id -> records scored (200 from the scorers)

    def summary(self) -> dict[str, Any]:
        return {
            "fuzz_cases": self.cases,
            "fuzz_5xx": len(self.server_errors),
            "fuzz_4xx_without_json_error": len(self.unclear_errors),
            "fuzz_records_scored": sum(self.scored.values()),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "by_operation": dict(self.by_operation),
        }


def header(response: Any, name: str) -> str:
    """A header of a schemathesis response (lowercase keys, list values)."""
    return str((response.headers.get(name.lower()) or [""])[0])


def scored_records(response: Any) -> int:
    """How many records a 200 from /predict or /explain scored (each is one row of the prediction log)."""
    if header(response, "Content-Type").startswith("text/csv"):
        return len(response.text.splitlines()) - 1
    body = response.json()
    return len(body["predictions"]) if "predictions" in body else 1


# What may answer 503 without being a fault: the documented "no token configured" of POST /reload.
EXPECTED_503 = {("POST", "/reload")}


def fuzz(url: str, cases: int) -> FuzzResult:
    """Send at least ``cases`` schemathesis cases (positive and negative data for every operation of the
    predictor's ``/openapi.json``, weighted to the scoring endpoints) and record every answer."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation.modes import GenerationMode

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [op.ok() for op in schema.get_all_operations()]
    result = FuzzResult()
    session = requests.Session()
    scoring = {"/predict", "/explain"}
    plan = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            plan.append((operation, mode, 4 if operation.path in scoring else 1))
    weight = sum(w for *_, w in plan)

    def record(case: Any) -> None:
        response = case.call(base_url=url, session=session, timeout=60)
        key = f"{case.method.upper()} {case.path}"
        result.cases += 1
        result.statuses[response.status_code] += 1
        result.by_operation[key] += 1
        text = response.text[:300]
        if response.status_code == 200 and case.path in scoring:
            result.scored[header(response, "X-Request-ID")] = scored_records(response)
        if response.status_code >= 500 and (case.method.upper(), case.path) not in EXPECTED_503:
            result.server_errors.append(f"{key} -> {response.status_code}: {text} (body {case.body!r:.300})")
        elif 400 <= response.status_code < 500:
            try:
                ok = isinstance(response.json().get("error"), str)
            except ValueError:
                ok = False
            if not ok:
                result.unclear_errors.append(f"{key} -> {response.status_code}: {text}")

    rounds = 0
    while result.cases < cases and plan and rounds < 50:
        rounds += 1
        for operation, mode, share in list(plan):
            budget = max(1, (cases - result.cases) * share // weight + 1)
            strategy = operation.as_strategy(generation_mode=mode)
            run = settings(
                max_examples=budget,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(case=strategy)(record))
            try:
                run()
            except Unsatisfiable:  # e.g. no invalid request exists for GET /health: nothing to send
                plan.remove((operation, mode, share))
    session.close()
    return result
