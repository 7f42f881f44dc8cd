"""The predictor that deploy starts natively when none answers: its pid file, and stopping it.

Deploy starts it detached (its own process group) and writes the pid to ``<work_dir>/run/predictor.pid``;
``python -m mlops down`` and ``status`` find it there whoever started it, and ``up`` replaces it with the
stack's own predictor. A pid in the file counts only while it is the process that was started: one created
after the file was written is a reused pid, and is left alone.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import psutil

from mlops.core import services
from mlops.core.config import Settings

PID_FILE = "predictor.pid"


def run_dir(settings: Settings) -> Path:
    """Pid and log files of the processes the native platform starts."""
    return settings.work_dir / "run"


def start(settings: Settings) -> services.ManagedProcess:
    """Start the predictor (serving's gunicorn process), detached; its pid goes to ``run/predictor.pid``."""
    from mlops.core.serving import predictor_server  # local import: the web stack is only needed to start it

    proc = predictor_server.predictor_process(settings, log_path=run_dir(settings) / "predictor.log").start()
    (run_dir(settings) / PID_FILE).write_text(str(proc.pid))
    return proc


def running(settings: Settings) -> psutil.Process | None:
    """The predictor deploy started, while it runs (not a later process that reused its pid)."""
    pid_file = run_dir(settings) / PID_FILE
    with contextlib.suppress(OSError, ValueError, psutil.Error):
        process = psutil.Process(int(pid_file.read_text()))
        if process.create_time() <= pid_file.stat().st_mtime + 1.0 and process.is_running():
            return process
    return None


def stop(settings: Settings, timeout: float = 30.0) -> int | None:
    """Stop the predictor deploy started (its whole process group); return its pid, or None if none ran."""
    process = running(settings)
    (run_dir(settings) / PID_FILE).unlink(missing_ok=True)
    if process is None:
        return None
    services.stop_group(process.pid, timeout)
    return process.pid
