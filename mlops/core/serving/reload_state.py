"""Reloads coalesce: at most one ``POST /reload`` in flight per predictor, across all its workers.

Workers are separate processes, so they share the reload's state through a small JSON file in the run dir
(``<work_dir>/run/predictor-<port>.reload.json``), changed under an exclusive ``flock`` on a lock file beside
it. ``/reload`` starts a reload (and sends the arbiter its SIGHUP) only when none is in flight; the others are
answered at once with the reload already under way and the version it loads. A reload is in flight from its
SIGHUP until as many new workers as the server runs have loaded the payload (:meth:`ReloadState.worker_booted`,
called by each worker once its app is built), or at most ``RELOAD_TIMEOUT_SECONDS`` (a new worker that never
boots does not block reloads for ever). The old workers keep serving until then
(:class:`mlops.core.serving.predictor_worker.PredictorWorker`), so a reload costs no gap in serving.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RELOAD_TIMEOUT_SECONDS = 60.0
RELOAD_STATE = "reload_state"  # the Flask app's extensions key, read by the worker


def state_path(work_dir: Path, port: int) -> Path:
    return work_dir / "run" / f"predictor-{port}.reload.json"


class ReloadState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def current(self) -> dict[str, Any] | None:
        """The last reload's state (read without the lock: the file is replaced atomically)."""
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def _write(self, state: dict[str, Any]) -> None:
        partial = self.path.with_name(f"{self.path.name}.{os.getpid()}.part")
        try:
            partial.write_text(json.dumps(state), encoding="utf-8")
            partial.replace(self.path)
        finally:
            partial.unlink(missing_ok=True)

    @staticmethod
    def in_flight(state: dict[str, Any] | None, arbiter: int) -> bool:
        return (
            state is not None
            and state.get("arbiter") == arbiter
            and state.get("finished") is None
            and time.time() - float(state.get("started", 0)) < RELOAD_TIMEOUT_SECONDS
        )

    def begin(self, arbiter: int, workers: int, version: str | None) -> tuple[bool, dict[str, Any]]:
        """Start a reload unless one is in flight: (True, its state) or (False, the running one's state).
        The caller sends the SIGHUP after a True (and :meth:`cancel` if it cannot)."""
        with self._locked():
            state = self.current()
            if state is not None and self.in_flight(state, arbiter):
                return False, state
            state = {
                "arbiter": arbiter,
                "started": time.time(),
                "workers": workers,
                "version": version,
                "booted": [],
                "finished": None,
                "requested_by": os.getpid(),
            }
            self._write(state)
            return True, state

    def cancel(self, arbiter: int) -> None:
        with self._locked():
            state = self.current()
            if state is not None and state.get("arbiter") == arbiter:
                self._write({**state, "finished": time.time(), "cancelled": True})

    def worker_booted(self, arbiter: int, pid: int) -> None:
        """A worker of ``arbiter`` has loaded the payload: the reload ends once enough of them have."""
        if not self.in_flight(self.current(), arbiter):  # the common case (no reload): no lock taken
            return
        with self._locked():
            state = self.current()
            if state is None or not self.in_flight(state, arbiter) or pid in state["booted"]:
                return
            booted = [*state["booted"], pid]
            finished = time.time() if len(booted) >= int(state.get("workers", 1)) else None
            self._write({**state, "booted": booted, "finished": finished})

    def waiting_for_new_workers(self, arbiter: int, pid: int) -> bool:
        """Whether an old worker told to stop should keep serving: a reload of its arbiter is in flight and
        this worker is not one of the new ones."""
        state = self.current()
        return self.in_flight(state, arbiter) and pid not in (state or {}).get("booted", [])
