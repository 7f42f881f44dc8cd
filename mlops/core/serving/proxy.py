"""The predictor's buffering proxy: nginx in front of gunicorn, started and stopped by gunicorn's own arbiter.

gunicorn's deployment docs ask for a buffering proxy in front of it: its workers read requests themselves, so
clients that send slowly (or not at all) hold its threads. With ``serving.proxy: nginx`` (the default),
:func:`mlops.core.serving.predictor_server.gunicorn_settings` binds gunicorn to a unix socket in the predictor's
private run folder and starts nginx, listening on ``serving.host:serving.port``, from gunicorn's
``when_ready`` hook; ``on_exit`` stops it. Natively, in the predictor image and in the generated payload the
same code runs: only the configuration differs.

nginx's configuration is ``nginx.conf.template`` beside this module, filled with the ``serving`` section's
values (:func:`render`). The slow-client bounds (docs/reliability.md, "Slow clients"):
``proxy_client_timeout_seconds`` for a request's whole header and for a stall in its body or its answer,
``proxy_worker_connections`` open connections, ``max_body_bytes`` per body; nginx's own error answers are the
API's JSON error body.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlops.core.config import Settings

TEMPLATE = Path(__file__).with_name("nginx.conf.template")
NGINX = "nginx"
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")  # where Debian puts nginx, often not on a user's PATH
START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0
# gunicorn's worker timeout (predictor_server's "timeout"): a 100k-row batch takes about a second, this only
# catches a stuck worker. nginx waits for an answer this much longer.
WORKER_TIMEOUT_SECONDS = 120
UPSTREAM_MARGIN_SECONDS = 10
MAX_SOCKET_PATH = 100  # a unix socket path is at most 107 bytes on Linux
FIX = (
    "install it (`make nginx`, or `apt-get install nginx-light` as root), or set serving.proxy: none "
    "(MLOPS_SERVING__PROXY=none) if a buffering proxy of your own stands in front of the predictor"
)
MISSING = f"serving.proxy is nginx but no nginx is installed: {FIX}"
_PLACEHOLDER = re.compile(r"@([a-z_]+)@")

_running: subprocess.Popen[bytes] | None = None  # the arbiter's nginx (one per gunicorn arbiter)


class ProxyError(RuntimeError):
    """nginx is missing, or did not start; the message says what to do."""


def enabled(settings: Settings) -> bool:
    return settings.serving.proxy == "nginx"


def nginx_binary() -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    return shutil.which(NGINX, path=path)


def require_nginx() -> str:
    binary = nginx_binary()
    if binary is None:
        raise ProxyError(MISSING)
    return binary


@dataclass(frozen=True)
class Layout:
    """Where one predictor's proxy keeps its files: a private (0700) folder per serving port."""

    folder: Path
    socket: Path  # gunicorn's unix socket, nginx's upstream

    @property
    def config(self) -> Path:
        return self.folder / "nginx.conf"

    @property
    def pid_file(self) -> Path:
        return self.folder / "nginx.pid"

    @property
    def temp_dir(self) -> Path:
        return self.folder / "temp"


def layout(settings: Settings) -> Layout:
    folder = settings.work_dir / "run" / f"proxy-{settings.serving.port}"
    socket = folder / "gunicorn.sock"
    if len(str(socket)) > MAX_SOCKET_PATH:  # a deep work dir: the socket goes to a private folder in /tmp
        digest = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
        socket = Path(tempfile.gettempdir()) / f"mlops-{os.geteuid()}" / f"predictor-{digest}.sock"
    return Layout(folder, socket)


def upstream_bind(settings: Settings) -> str:
    """gunicorn's ``bind`` behind the proxy."""
    return f"unix:{layout(settings).socket}"


def _listen(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _user_directive() -> str:
    if os.geteuid() != 0:
        return "# not root: nginx's workers run as the user who started it"
    import grp
    import pwd

    # as root nginx would hand its workers to `nobody`, who cannot open the private run folder
    return f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"


def open_files_limit(worker_connections: int) -> int:
    """nginx's ``worker_rlimit_nofile``: two descriptors per connection (client and gunicorn), within the hard limit."""
    wanted = 2 * worker_connections + 64
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, int(hard))


def values(settings: Settings, where: Layout) -> dict[str, str]:
    """What fills the template's placeholders."""
    serving = settings.serving
    return {
        "worker_rlimit_nofile": str(open_files_limit(serving.proxy_worker_connections)),
        "worker_connections": str(serving.proxy_worker_connections),
        "pid_file": str(where.pid_file),
        "user_directive": _user_directive(),
        "temp_dir": str(where.temp_dir),
        "client_timeout": str(serving.proxy_client_timeout_seconds),
        "keepalive_seconds": str(serving.keepalive_seconds),
        "max_body_bytes": str(serving.max_body_bytes),
        "upstream_socket": str(where.socket),
        "listen": _listen(serving.host, serving.port),
        "upstream_timeout": str(WORKER_TIMEOUT_SECONDS + UPSTREAM_MARGIN_SECONDS),
    }


def render(settings: Settings, where: Layout | None = None) -> str:
    """nginx's configuration: the template with each placeholder (a name between at-signs) filled in; a name
    the template and :func:`values` do not share is an error."""
    filled = values(settings, where or layout(settings))
    text = TEMPLATE.read_text()
    used = set(_PLACEHOLDER.findall(text))
    if used != set(filled):
        raise ProxyError(f"{TEMPLATE.name} and proxy.values() disagree: {sorted(used ^ set(filled))}")
    return _PLACEHOLDER.sub(lambda match: filled[match.group(1)], text)


def prepare(settings: Settings) -> Layout:
    """The private folders (0700) and the rendered configuration."""
    where = layout(settings)
    for folder in (where.folder, where.temp_dir, where.socket.parent):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if folder.stat().st_uid != os.geteuid():
            raise ProxyError(f"{folder} belongs to another user: the predictor's sockets must be private")
        folder.chmod(0o700)
    where.config.write_text(render(settings, where))
    return where


def _child_setup() -> None:  # pragma: no cover (runs in the forked child, before exec)
    # nginx goes when gunicorn's arbiter goes, even if the arbiter is SIGKILLed (PR_SET_PDEATHSIG = 1)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def start(settings: Settings) -> subprocess.Popen[bytes]:
    """Start nginx for this predictor (from gunicorn's arbiter); return once it listens on serving.host:port."""
    global _running
    binary = require_nginx()
    where = prepare(settings)
    where.pid_file.unlink(missing_ok=True)  # a stale one would pass for this nginx listening
    command = [binary, "-p", f"{where.folder}/", "-c", str(where.config), "-e", "stderr"]
    check = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True)
    if check.returncode != 0:
        raise ProxyError(f"nginx refused its configuration {where.config}: {check.stderr.strip()}")
    # its own session: stopping the predictor's process group reaches gunicorn, whose on_exit stops nginx
    # gracefully (SIGQUIT) after the workers have answered what they were given
    process = subprocess.Popen(command, start_new_session=True, preexec_fn=_child_setup)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not _listening(where, process.pid):
        if process.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            what = "exited" if process.poll() is not None else f"did not listen within {START_TIMEOUT_SECONDS:.0f} s"
            raise ProxyError(
                f"nginx {what} instead of listening on {_listen(settings.serving.host, settings.serving.port)} "
                "(is the port taken?); its own errors are above in this log"
            )
        time.sleep(0.05)
    _running = process
    return process


def _listening(where: Layout, pid: int) -> bool:
    # nginx writes its pid file once its listening sockets are open (and not if it cannot bind)
    try:
        return int(where.pid_file.read_text().strip() or 0) == pid
    except (OSError, ValueError):
        return False


def stop(timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """Stop the arbiter's nginx gracefully (SIGQUIT: open requests are finished, idle connections closed)."""
    global _running
    process, _running = _running, None
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGQUIT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.poll() is not None:  # gunicorn's arbiter may have reaped it already (SIGCHLD)
                return
            os.kill(process.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)
    print(f"nginx {process.pid} did not stop within {timeout:.0f} s: killed", file=sys.stderr)
