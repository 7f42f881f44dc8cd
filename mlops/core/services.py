"""Local service processes: start them in their own process group, wait until healthy, stop them all.

Used by ``python -m mlops up`` and by the test suite, so both run the services the same way.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import sqlalchemy as sa

from mlops.core.monitoring import store

VENV_BIN = Path(sys.executable).parent


# A variable that holds a secret: by its name, or a URL with a password in its value (a database URL).
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET")
PASSWORD_IN_URL = re.compile(r"^[\w+.-]+://[^/@\s]*:[^/@\s]+@")


def is_secret(name: str, value: str) -> bool:
    return bool(SECRET_NAME.search(name) or PASSWORD_IN_URL.match(value))


def public_environment(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """``environ`` without any variable that holds a secret."""
    return {name: value for name, value in environ.items() if not is_secret(name, value)}


class ServiceError(RuntimeError):
    """A service did not start or become healthy; the message includes the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass
class ManagedProcess:
    """A child process in a session of its own, so that stopping it stops all it spawned."""

    name: str
    command: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    # False: of this process's environment the child inherits only what holds no secret; its secrets are then
    # exactly those in ``env`` (the native stack gives each service the ones it uses)
    inherit_secrets: bool = True

    def start(self) -> ManagedProcess:
        """Start it with its output appended to ``log_path``. Logs and what the process writes are private to
        the user (a log folder it creates 0700, files 0600, umask 077): they can hold request data and URLs."""
        self.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(descriptor, 0o600)  # a log left by an earlier version may be wider
        inherited = dict(os.environ) if self.inherit_secrets else public_environment(os.environ)
        env = {**inherited, **self.env, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        try:
            self.process = subprocess.Popen(
                self.command,
                stdout=descriptor,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
                umask=0o077,
            )
        finally:
            os.close(descriptor)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None:
            return
        stop_group(self.process.pid, timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=1)


def stop_group(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL what is left after ``timeout``."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(-pgid, os.WNOHANG)
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def wait_http(
    url: str, proc: ManagedProcess | None = None, timeout: float = 120.0, ok: tuple[int, ...] = (200,)
) -> None:
    """Poll ``url`` until it answers one of ``ok``; fail early if ``proc`` dies."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise ServiceError(f"{proc.name} exited before {url} answered:\n{proc.log_tail()}")
        try:
            response = requests.get(url, timeout=5)
            if response.status_code in ok:
                return
            last = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last = exc.__class__.__name__
        time.sleep(0.5)
    tail = f":\n{proc.log_tail()}" if proc else ""
    raise ServiceError(f"{url} not healthy after {timeout:.0f} s ({last}){tail}")


def mlflow_server(
    backend_uri: str, artifacts_dir: Path, port: int, log_path: Path, host: str = "127.0.0.1"
) -> ManagedProcess:
    """The MLflow tracking server + registry, serving artifacts itself (``mlflow-artifacts:``)."""
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(VENV_BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        store.normalise_url(backend_uri),
        "--artifacts-destination",
        str(artifacts_dir),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--allowed-hosts",
        f"mlflow,mlflow:5000,localhost:*,127.0.0.1:*,{host}:*",
    ]
    # The job runner would add seven worker processes (~2.4 GB) we never use.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return ManagedProcess("mlflow", command, log_path, env=env)


def database_exists(server_url: str, name: str) -> bool:
    eng = sa.create_engine(store.normalise_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as conn:
            return bool(conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar())
    finally:
        eng.dispose()


def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``server_url`` if missing; return its URL."""
    url = sa.make_url(store.normalise_url(server_url))
    if not database_exists(server_url, name):
        eng = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with eng.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            eng.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    eng = sa.create_engine(store.normalise_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        eng.dispose()


def postgres_reachable(url: str) -> bool:
    eng = sa.create_engine(store.normalise_url(url), connect_args={"connect_timeout": 3})
    try:
        with eng.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        eng.dispose()


def embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) an embedded PostgreSQL in ``data_dir``; return its URL (Unix socket)."""
    import pgserver  # local import: only the native mode without a system PostgreSQL needs it

    server = pgserver.get_server(data_dir, cleanup_mode=None)
    return store.normalise_url(server.get_uri())


def private_sqlite(url: str) -> None:
    """A SQLite store only its owner can read (request data, webhook bodies): created empty with mode 0600 if
    missing, narrowed to 0600 if wider. SQLite gives its journal files the database file's mode."""
    if not url.startswith("sqlite:///"):
        return
    path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    if not path.is_absolute():
        path = Path.cwd() / path
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (secrets, and the state that holds database URLs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
