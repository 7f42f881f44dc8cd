"""The native stack's supervisor: for ``python -m mlops up`` what compose's ``restart: unless-stopped`` does.

``up`` starts it last (``python -m mlops.core.platform.stack_supervisor RUN_FOLDER``), records it in
``state.json`` and leaves it running; ``down`` stops it before anything else. Every ``POLL_SECONDS`` it looks at
each service's recorded process. One that is gone (it exited, was killed or crashed) is started again from the
spec ``up`` recorded, once what is left of its process group is killed (as a container's processes die with its
main process: an orphaned gunicorn worker would hold the port). The first restart is immediate; a service that
keeps dying waits ``backoff`` before the next one (1 s doubling to 60 s); one that has run ``STABLE_SECONDS``
starts over at an immediate restart. Like Docker's restart policy it restarts on exit, not on a failing health
check. Each restart is a line in ``logs/supervisor.log`` and is counted in ``state.json`` (``restarts``), where
the new pid replaces the old one so that ``status`` and ``down`` find it.

Its own environment holds no secret: it reads each service's environment from the 0600 state file.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import psutil

from mlops.core import services
from mlops.core.platform.stack_state import STATE_FILE, Service, State

POLL_SECONDS = 0.5
FIRST_DELAY, MAX_DELAY = 1.0, 60.0
STABLE_SECONDS = 30.0


def backoff(failures: int) -> float:
    """Seconds to wait before restarting a service that died ``failures`` times in a row (1: at once)."""
    return 0.0 if failures <= 1 else min(FIRST_DELAY * 2 ** (failures - 2), MAX_DELAY)


def _alive(process: psutil.Process) -> bool:
    """Killed processes that are not our children stay zombies until their parent reaps them: dead enough."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def say(message: str) -> None:
    print(f"{datetime.now(UTC).isoformat(timespec='milliseconds')} {message}", flush=True)


def start_service(service: Service) -> tuple[int, subprocess.Popen[bytes] | None]:
    """Start ``service`` from its spec; its new pid (and the child to reap, when it is ours)."""
    spec = service.spec
    assert spec is not None
    if "embedded" in spec:  # pgserver's PostgreSQL daemonises: its postmaster is not our child
        folder = Path(spec["embedded"])
        services.embedded_postgres(folder)
        return int((folder / "postmaster.pid").read_text().split()[0]), None
    cwd = spec.get("cwd")
    proc = services.ManagedProcess(
        service.name,
        list(spec["command"]),
        Path(service.log),
        env=dict(spec["env"]),
        cwd=Path(cwd) if cwd else None,
        inherit_secrets=False,
    ).start()
    return proc.pid, proc.process


class Supervisor:
    def __init__(self, run: Path) -> None:
        self.run = run
        self.stopping = False
        self.failures: dict[str, int] = {}
        self.due: dict[str, float] = {}
        self.since: dict[str, float] = {}
        self.children: list[subprocess.Popen[bytes]] = []

    def stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def step(self, state: State) -> None:
        now = time.monotonic()
        self.children = [child for child in self.children if child.poll() is None]  # reap the dead ones
        for service in state.services:
            if service.spec is None:
                continue
            if service.is_running():
                if now - self.since.setdefault(service.name, now) >= STABLE_SECONDS:
                    self.failures[service.name] = 0
                continue
            if service.name not in self.due:
                failures = self.failures.get(service.name, 0) + 1
                self.failures[service.name] = failures
                self.due[service.name] = now + backoff(failures)
                say(f"{service.name} (pid {service.pid}) is gone: restart {failures} in {backoff(failures):.0f} s")
            if now >= self.due[service.name]:
                self.restart(state, service)

    def restart(self, state: State, service: Service) -> None:
        left = service.remains()
        for process in left:
            with contextlib.suppress(psutil.Error):
                process.kill()
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in left) and time.monotonic() < deadline:
            time.sleep(0.05)
        del self.due[service.name]
        try:
            pid, child = start_service(service)
        except (OSError, services.ServiceError) as exc:
            say(f"{service.name} did not start again: {exc}")
            self.failures[service.name] += 1
            self.due[service.name] = time.monotonic() + backoff(self.failures[service.name])
            return
        if child is not None:
            self.children.append(child)
        service.pid, service.create_time = pid, psutil.Process(pid).create_time()
        service.restarts += 1
        self.since[service.name] = time.monotonic()
        state.save(self.run)
        killed = f", after killing {len(left)} process(es) left in its group" if left else ""
        say(f"{service.name} started again (pid {pid}, restart {service.restarts}{killed})")

    def loop(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        state = State.load(self.run)
        if state is None:
            say(f"no {STATE_FILE} in {self.run}: nothing to supervise")
            return 1
        say(f"supervising {', '.join(s.name for s in state.services if s.spec)} (run folder {self.run})")
        while not self.stopping:
            if not (self.run / STATE_FILE).is_file():  # `down` removed it without stopping us first
                break
            self.step(state)
            time.sleep(POLL_SECONDS)
        say("stopped")
        return 0


if __name__ == "__main__":
    sys.exit(Supervisor(Path(sys.argv[1])).loop())
