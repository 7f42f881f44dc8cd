"""The native stack's run folder (``<work_dir>/stack``): what ``up`` started (``state.json``: the pid and start time
of every process group, so ``down`` stops exactly those, and how to start each again, which the supervisor reads)
and the secrets it generated (``secrets.env``). Both are 0600: the start specs hold each service's secrets.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from mlops.core import services
from mlops.core.config import Settings

STATE_FILE = "state.json"
SECRETS_FILE = "secrets.env"
ENV_FILE = "stack.env"
# Secrets the stack generates when the environment does not give them (never a default in a file).
GENERATED_SECRETS = (
    "MLOPS_SECRETS__RELOAD_TOKEN",
    "MLOPS_SECRETS__RETRAIN_TOKEN",
    "MLOPS_SECRETS__MAGE_OWNER_PASSWORD",
    "POSTGRES_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
)


@dataclass
class Service:
    """One process group ``up`` started (what ``down`` may stop) and how to ask it for its health."""

    name: str
    pid: int
    create_time: float
    url: str
    health: str  # an http(s) URL, or a database URL for PostgreSQL
    log: str
    signal: int = int(signal.SIGTERM)  # what `down` sends the group (SIGINT: PostgreSQL's fast shutdown)
    # How the supervisor starts it again: {"command": [...], "env": {...}, "cwd": str | None}, or
    # {"embedded": data dir} for pgserver's PostgreSQL. None: not restarted.
    spec: dict[str, Any] | None = None
    restarts: int = 0  # times the supervisor started it again

    def is_running(self) -> bool:
        """True while the recorded pid is still the process that was started (not a reused pid, not a zombie)."""
        try:
            process = psutil.Process(self.pid)
            same = abs(process.create_time() - self.create_time) < 0.5
            return same and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def remains(self) -> list[psutil.Process]:
        """Processes left in the group this service led once its leader is gone (an orphaned gunicorn worker
        holding the port, say). Linux gives out no pid still used as a group id, so members of that group are
        ours, unless the group emptied and a new process took the pid: then that process lives, and is not ours.
        """
        with contextlib.suppress(psutil.Error):
            if abs(psutil.Process(self.pid).create_time() - self.create_time) >= 0.5:
                return []  # the pid now belongs to another process
        found = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                member = process.pid != self.pid and os.getpgid(process.pid) == self.pid
                if member and process.status() != psutil.STATUS_ZOMBIE:
                    found.append(process)
        return found


@dataclass
class State:
    database: str  # postgres (system binaries), embedded, sqlite
    services: list[Service] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    supervisor: Service | None = None  # the process that restarts a service that died (stack_supervisor)

    def save(self, run: Path) -> None:
        """Atomically (the supervisor rewrites it while ``status`` reads it), 0600."""
        partial = run / f".{STATE_FILE}.{os.getpid()}"
        services.write_private(partial, json.dumps(asdict(self), indent=2))
        os.replace(partial, run / STATE_FILE)

    @classmethod
    def load(cls, run: Path) -> State | None:
        path = run / STATE_FILE
        if not path.is_file():
            return None
        raw = json.loads(path.read_text())
        supervisor = raw.get("supervisor")
        return cls(
            raw["database"],
            [Service(**s) for s in raw["services"]],
            raw.get("notes", {}),
            Service(**supervisor) if supervisor else None,
        )

    def supervised(self) -> bool:
        return self.supervisor is not None and self.supervisor.is_running()


def run_folder(settings: Settings) -> Path:
    return settings.work_dir / "stack"


def _read_env_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def stack_secrets(run: Path, environ: dict[str, str]) -> dict[str, str]:
    """Secrets from the environment where given, else generated once into ``secrets.env`` (0600)."""
    stored = _read_env_file(run / SECRETS_FILE)
    generated = {name: stored.get(name) or secrets.token_hex(24) for name in GENERATED_SECRETS if not environ.get(name)}
    if generated != {k: v for k, v in stored.items() if k in generated} or not (run / SECRETS_FILE).is_file():
        lines = ["# generated by `python -m mlops up` for this run folder; never commit it"]
        services.write_private(
            run / SECRETS_FILE, "\n".join([*lines, *(f"{k}={v}" for k, v in generated.items())]) + "\n"
        )
    return {name: environ.get(name) or generated[name] for name in GENERATED_SECRETS}
