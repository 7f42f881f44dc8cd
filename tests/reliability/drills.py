"""The reliability drills as plain functions, shared by ``tests/reliability`` (small sizes, asserted) and
``benchmarks/soak.py`` (``make soak``: larger sizes, measured into ``benchmarks/results/reliability.json``).

- :func:`fuzz`: schemathesis cases generated from the predictor's own ``/openapi.json`` (valid and invalid
  data), each sent to the running predictor; every answer is recorded, 5xx ones kept as failures.
- :func:`load`: a bounded concurrent load on loopback; every request's id and latency.
- :class:`ThrowawayPostgres`: a PostgreSQL server of the drill alone (the system binaries, as
  ``python -m mlops up`` runs them) that may be stopped and started again on the same port and data.
"""

from __future__ import annotations

import os
import secrets
import signal
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

from mlops.core import config, services, stack, store

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
        if stack.system_postgres_bin() is None:
            raise RuntimeError("the drills need PostgreSQL's server binaries (e.g. /usr/lib/postgresql/*/bin)")
        if not stack._usable_by_postgres_user(self.run / "pgdata"):
            raise RuntimeError(f"the postgres system user cannot write {self.run / 'pgdata'}")
        base = config.load()
        ours = base.model_copy(update={"stack": base.stack.model_copy(update={"postgres_port": self.port})})
        self.process, self.server_url = stack.start_system_postgres(ours, self.run, self.password)
        stack.wait_postgres(self.server_url, self.process, timeout=60)
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
    """(address, port) of every listening TCP socket of the process group led by ``pid``."""
    group = os.getpgid(pid)
    pids = {p.pid for p in psutil.process_iter() if _pgid(p.pid) == group}
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
