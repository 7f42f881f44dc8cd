"""The serving benchmark's load generator: HTTP/1.1 on plain sockets (kept open where the server allows it),
single-record latency and throughput from several client processes. ``requests`` or ``http.client`` alone would
cost more CPU per call than the predictor does, and the client shares the 2 cores with the servers.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np

SINGLE_REQUESTS = 400
THROUGHPUT_SECONDS = 10.0
CLIENTS = 8
CLIENT_PROCESSES = 2


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


class Endpoint:
    """How to ask one server for probabilities."""

    def __init__(self, name: str, url: str, features: list[str]) -> None:
        self.name, self.url, self.features = name, url, features

    def body(self, records: list[dict[str, Any]]) -> bytes:
        """One record as each server takes it natively (ours: the record object; MLflow: a one-row split);
        a batch as MLflow's ``dataframe_split``, which both take: the same bytes go to both."""
        if self.name == "predictor" and len(records) == 1:
            return json.dumps(records[0]).encode()
        rows = [[r[f] for f in self.features] for r in records]
        return json.dumps({"dataframe_split": {"columns": self.features, "data": rows}}).encode()

    def path(self) -> str:
        return "/invocations" if self.name == "mlflow" else "/predict"

    def probabilities(self, answer: bytes) -> np.ndarray:
        body = json.loads(answer)
        if self.name == "mlflow":
            return np.asarray([row[1] for row in body["predictions"]], dtype="float64")
        return np.asarray([p["probability"] for p in body["predictions"]], dtype="float64")

    def connect(self) -> Connection:
        return Connection(self.url)


class Connection:
    """One client's HTTP/1.1 connection on a plain socket, kept alive between requests; reopened when the
    server closes it (after each request for gunicorn's sync workers, after an idle keep-alive timeout for
    gthread). A load generator must cost less than the server it measures: ``http.client`` parses each
    answer's headers with the email package, which on our 2 shared cores cost more CPU than our predictor's
    answer itself (both servers get this same client)."""

    def __init__(self, url: str) -> None:
        where = urlsplit(url)
        self.address = (where.hostname or "127.0.0.1", where.port or 80)
        self.host = f"{self.address[0]}:{self.address[1]}".encode()
        self.sock: socket.socket | None = None
        self.buffer = b""

    def post(self, path: str, body: bytes) -> tuple[bytes, str]:
        """The answer's body and its Server-Timing header; an HTTP error raises."""
        request = (
            b"POST " + path.encode() + b" HTTP/1.1\r\nHost: " + self.host + b"\r\nContent-Type: application/json"
            b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        reused = self.sock is not None
        try:
            status, headers, answer = self._exchange(request)
        except (BrokenPipeError, ConnectionResetError, ConnectionClosed):
            if not reused:
                raise
            # The server closed the idle connection as this request left (urllib3 retries so too): once more
            self.close()
            status, headers, answer = self._exchange(request)
        if headers.get("connection", "").lower() == "close":
            self.close()
        if status != 200:
            raise http.client.HTTPException(f"HTTP {status}: {answer[:200]!r}")
        return answer, headers.get("server-timing", "")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buffer = None, b""

    def _exchange(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=300)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._receive()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            raise http.client.HTTPException(f"an answer without Content-Length: {status_line}")
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self._receive()
        answer, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, answer

    def _receive(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionClosed("the server closed the connection")
        self.buffer += chunk


class ConnectionClosed(ConnectionError):
    """The server closed the connection before a whole answer arrived."""


def single_latency(endpoint: Endpoint, bodies: list[bytes]) -> dict[str, Any]:
    connection = endpoint.connect()
    for body in bodies[:30]:  # warm-up
        connection.post(endpoint.path(), body)
    client_ms: list[float] = []
    server_ms: list[float] = []
    for body in bodies[:SINGLE_REQUESTS]:
        started = time.perf_counter()
        _, timing = connection.post(endpoint.path(), body)
        client_ms.append((time.perf_counter() - started) * 1000)
        if "dur=" in timing:
            server_ms.append(float(timing.split("dur=")[1].split(",")[0]))
    out = {
        "requests": len(client_ms),
        "client_p50_ms": percentile(client_ms, 50),
        "client_p99_ms": percentile(client_ms, 99),
    }
    if server_ms:
        out |= {"server_p50_ms": percentile(server_ms, 50), "server_p99_ms": percentile(server_ms, 99)}
    return out


def _client_process(endpoint: Endpoint, bodies: list[bytes], first: int, threads: int, out: Any) -> None:
    """One load-generating process: ``threads`` clients for THROUGHPUT_SECONDS; puts (answered, errors)."""
    done = [0] * threads
    errors = [0] * threads
    stop = threading.Event()

    def client(n: int) -> None:
        connection = endpoint.connect()
        i = first + n
        while not stop.is_set():
            try:
                connection.post(endpoint.path(), bodies[i % len(bodies)])
                done[n] += 1
            except (OSError, http.client.HTTPException):
                errors[n] += 1
                connection.close()
            i += CLIENTS

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(THROUGHPUT_SECONDS)
    stop.set()
    for worker in workers:
        worker.join()
    out.put((sum(done), sum(errors)))


def throughput(endpoint: Endpoint, bodies: list[bytes]) -> dict[str, Any]:
    """CLIENTS connections from CLIENT_PROCESSES processes (one Python process's GIL would cap the load
    below what our predictor answers, and measure the client instead of the server)."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    per_process = CLIENTS // CLIENT_PROCESSES
    processes = [
        context.Process(target=_client_process, args=(endpoint, bodies, p * per_process, per_process, results))
        for p in range(CLIENT_PROCESSES)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    counts = [results.get(timeout=THROUGHPUT_SECONDS + 120) for _ in processes]
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - started
    answered = sum(n for n, _ in counts)
    return {
        "clients": CLIENTS,
        "client_processes": CLIENT_PROCESSES,
        "seconds": round(elapsed, 2),
        "requests": answered,
        "errors": sum(e for _, e in counts),
        "requests_per_second": answered / elapsed,
    }
