"""Slow clients at scale: many connections that hold the predictor's door open, and whether normal clients
still get through (issue #25 item 2; docs/reliability.md, "Slow clients").

:func:`slow_clients` opens ``connections_per_kind`` real TCP connections of each kind to the predictor on
127.0.0.1 and keeps them slow while normal clients send requests:

- ``one_byte``: connect, send one byte of a request line, then nothing;
- ``slow_headers``: a request line, then headers one byte every ``trickle_seconds``, never ending them;
- ``slow_body``: a complete ``POST /predict`` header, then its body one byte every ``trickle_seconds``,
  never the last byte.

Per kind it measures the share of normal requests answered 200 within ``within_ms`` while the slow
connections are held (``answered_share``, ``p99_ms``), then stops sending on the slow connections and
waits (at most ``close_wait_seconds``) for the server to close them: a server that reads clients with
timeouts closes every one in bounded time; one that does not holds them until the client leaves.

Bounded in time: every normal request has a timeout, the normal phase a deadline (requests not sent by
then count as not answered), the close phase a deadline. It only ever connects to 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import resource
import selectors
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

KINDS = ("one_byte", "slow_headers", "slow_body")
LOOPBACK = "127.0.0.1"


def _raise_open_files(needed: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``needed`` (up to the hard limit); return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return int(soft)


def _loopback_port(base_url: str) -> int:
    parts = urlsplit(base_url)
    if parts.scheme != "http" or parts.hostname not in (LOOPBACK, "localhost"):
        raise ValueError(f"the slow-client drill only targets http://127.0.0.1 (got {base_url!r})")
    return parts.port or 80


@dataclass
class _Slow:
    sock: socket.socket
    opened: float
    pending: bytes  # what the trickler still sends, one byte a tick
    closed_at: float | None = None
    answer: bytes = b""  # what the server wrote before closing (a 408/400 status line, if any)


@dataclass
class _Normal:
    samples: list[tuple[float, str]] = field(default_factory=list)  # (milliseconds, status) per request sent
    not_sent: int = 0


def _payloads(kind: str, body: bytes) -> tuple[bytes, bytes]:
    """(sent at once, trickled afterwards) for one slow connection of ``kind``."""
    if kind == "one_byte":
        return b"P", b""
    if kind == "slow_headers":
        head = f"POST /predict HTTP/1.1\r\nHost: {LOOPBACK}\r\n".encode()
        return head, b"X-Slow: 1\r\n" * 10_000  # never the blank line that ends the headers
    if kind == "slow_body":
        head = (
            f"POST /predict HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        return head, body[:-1]  # never the last byte
    raise ValueError(f"unknown kind {kind!r} (one of {KINDS})")


def _open(port: int, kind: str, count: int, body: bytes) -> tuple[list[_Slow], int]:
    first, rest = _payloads(kind, body)
    opened: list[_Slow] = []
    failed = 0
    for _ in range(count):
        try:
            sock = socket.create_connection((LOOPBACK, port), timeout=5)
            sock.sendall(first)
            sock.setblocking(False)
        except OSError:
            failed += 1
            continue
        opened.append(_Slow(sock, time.monotonic(), rest))
    return opened, failed


def _watch(slow: list[_Slow], selector: selectors.BaseSelector, timeout: float) -> None:
    """Read what the server sent on the slow connections; note the ones it closed."""
    for key, _ in selector.select(timeout):
        conn: _Slow = key.data
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if data:
            conn.answer = (conn.answer + data)[:200]
            continue
        conn.closed_at = time.monotonic()
        selector.unregister(conn.sock)


def _trickle(slow: list[_Slow], selector: selectors.BaseSelector, stop: threading.Event, every: float) -> None:
    while not stop.is_set():
        tick = time.monotonic() + every
        for conn in slow:
            if conn.closed_at is None and conn.pending:
                try:
                    sent = conn.sock.send(conn.pending[:1])
                    conn.pending = conn.pending[sent:]
                except BlockingIOError:
                    pass
                except OSError:
                    conn.closed_at = time.monotonic()
                    selector.unregister(conn.sock)
        while not stop.is_set() and time.monotonic() < tick:
            _watch(slow, selector, min(0.2, max(tick - time.monotonic(), 0.0)))


def _normal_load(
    port: int, body: bytes | None, requests: int, threads: int, timeout: float, deadline: float
) -> _Normal:
    result = _Normal()
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        while True:
            with lock:
                if next(counter, None) is None:
                    return
                if time.monotonic() >= deadline:
                    result.not_sent += 1
                    continue
            began = time.perf_counter()
            connection = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
            try:
                if body is None:
                    connection.request("GET", "/health")
                else:
                    connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                status = str(response.status)
            except (OSError, http.client.HTTPException) as exc:
                status = exc.__class__.__name__
            finally:
                connection.close()
            elapsed = (time.perf_counter() - began) * 1000
            with lock:
                result.samples.append((elapsed, status))

    workers = [threading.Thread(target=client, name=f"normal-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return result


def drill_kind(
    base_url: str,
    kind: str,
    connections: int = 1000,
    normal_requests: int = 200,
    record: dict[str, Any] | None = None,
    *,
    normal_threads: int = 4,
    within_ms: float = 1000.0,
    trickle_seconds: float = 1.0,
    normal_deadline_seconds: float = 30.0,
    close_wait_seconds: float = 40.0,
) -> dict[str, Any]:
    """One kind of slow connection, ``connections`` of them held while ``normal_requests`` normal ones are sent
    (``POST /predict`` of ``record``, or ``GET /health`` without one)."""
    port = _loopback_port(base_url)
    _raise_open_files(connections + normal_threads + 256)
    body = json.dumps(record).encode() if record is not None else None
    began = time.monotonic()
    slow, open_failed = _open(port, kind, connections, body or b'{"x": 1}')
    selector = selectors.DefaultSelector()
    for conn in slow:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    stop = threading.Event()
    trickler = threading.Thread(target=_trickle, args=(slow, selector, stop, trickle_seconds), name="slow-trickle")
    trickler.start()
    try:
        time.sleep(1.0)  # the slow connections are in the server before the normal ones arrive
        held_during_normal = sum(1 for conn in slow if conn.closed_at is None)
        normal = _normal_load(
            port,
            body,
            normal_requests,
            normal_threads,
            timeout=max(2.0, 2 * within_ms / 1000),
            deadline=time.monotonic() + normal_deadline_seconds,
        )
        stop.set()
        trickler.join()
        stopped_sending = time.monotonic()
        close_deadline = stopped_sending + close_wait_seconds
        while any(conn.closed_at is None for conn in slow) and time.monotonic() < close_deadline:
            _watch(slow, selector, 0.5)
    finally:
        stop.set()
        trickler.join()
        for conn in slow:
            conn.sock.close()
        selector.close()
    closed = [conn for conn in slow if conn.closed_at is not None]
    answered = sum(1 for ms, status in normal.samples if status == "200" and ms <= within_ms)
    latencies = [ms for ms, _ in normal.samples] or [float("nan")]
    statuses = Counter(status for _, status in normal.samples)
    answers = Counter(conn.answer.split(b"\r\n", 1)[0].decode("latin1") or "(closed, no answer)" for conn in closed)
    return {
        "kind": kind,
        "slow_connections": connections,
        "opened": len(slow),
        "open_failed": open_failed,
        "held_when_normal_started": held_during_normal,
        "normal_requests": normal_requests,
        "answered_within_ms": within_ms,
        "answered": answered,
        "answered_share": round(answered / normal_requests, 4) if normal_requests else 0.0,
        "not_sent_by_deadline": normal.not_sent,
        "statuses": dict(sorted(statuses.items())),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "closed_by_server": len(closed),
        "closed_by_server_share": round(len(closed) / len(slow), 4) if slow else 0.0,
        "closed_in_bounded_time": bool(slow) and len(closed) == len(slow),
        "max_held_seconds": round(max((c.closed_at - c.opened for c in closed if c.closed_at), default=0.0), 1),
        "still_open_after_wait": len(slow) - len(closed),
        "close_wait_seconds": close_wait_seconds,
        "server_answers": dict(answers.most_common(5)),
        "seconds": round(time.monotonic() - began, 1),
    }


def slow_clients(
    base_url: str,
    connections_per_kind: int = 1000,
    normal_requests: int = 200,
    record: dict[str, Any] | None = None,
    *,
    kinds: tuple[str, ...] = KINDS,
    **options: Any,
) -> dict[str, Any]:
    """Each kind in turn (:func:`drill_kind`); the summary: per kind, and the worst ``answered_share``."""
    results = {
        kind: drill_kind(base_url, kind, connections_per_kind, normal_requests, record, **options) for kind in kinds
    }
    return {
        "connections_per_kind": connections_per_kind,
        "kinds": results,
        "answered_share": min(r["answered_share"] for r in results.values()),
        "p99_ms": max(r["p99_ms"] for r in results.values()),
        "closed_in_bounded_time": all(r["closed_in_bounded_time"] for r in results.values()),
    }
