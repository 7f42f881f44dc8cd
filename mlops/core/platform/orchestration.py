"""The Mage server: database bootstrap with the retrain trigger pinned, the server process, the trigger URL.

Grafana's contact point must know the retrain trigger's URL before Mage ever runs, but Mage numbers its
``pipeline_schedule`` rows itself. So before ``mage start`` the bootstrap runs Mage's own migrations and
inserts the retrain pipeline's API trigger with a fixed id (``orchestration.retrain_schedule_id``) and the
token from the environment (``MLOPS_SECRETS__RETRAIN_TOKEN``), named as in
``mlops/pipelines/retrain/triggers.yaml`` so Mage's trigger sync updates that row instead of adding one.
The token never lives in git. Mage's database is chosen by ``MAGE_DATABASE_CONNECTION_URL`` (read once,
when Mage is imported), so the bootstrap runs in a child process: ``python -m mlops.core.platform.orchestration``.

Mage always runs with login required, natively as in docker-compose.yml: without it anyone who reaches
its port could start any pipeline through Mage's own API, around the retrain trigger's token. The owner
is ``orchestration.mage_owner_email`` with the password ``MLOPS_SECRETS__MAGE_OWNER_PASSWORD`` (no
default; ``python -m mlops up`` generates one). :class:`MageApi` logs in as the owner for the calls the
platform itself makes (reading a run's status); the retrain trigger needs only its token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import requests

from mlops.core import services
from mlops.core.config import Settings
from mlops.core.monitoring import store

RETRAIN_PIPELINE = "retrain"
RETRAIN_TRIGGER_NAME = "retrain on prediction drift alert"  # = `name` in pipelines/retrain/triggers.yaml
DATABASE_ENV = "MAGE_DATABASE_CONNECTION_URL"
FINISHED = ("completed", "failed", "cancelled")  # a pipeline run's statuses that do not change again


class OrchestrationError(RuntimeError):
    """Mage cannot be bootstrapped or reached as configured; the message says what to set."""


class RunTimeout(OrchestrationError):
    """A pipeline run did not finish in time; the message lists the latest runs and their block runs."""


def project_dir(settings: Settings) -> Path:
    """The Mage project: the ``mlops`` package folder."""
    return settings.root / "mlops"


def required_secret(settings: Settings, name: str, why: str) -> str:
    """``settings.secrets.<name>``, or an error naming its environment variable and how to make one."""
    value = getattr(settings.secrets, name)
    if not value:
        variable = f"MLOPS_SECRETS__{name.upper()}"
        raise OrchestrationError(
            f"{variable} is not set: {why} (e.g. `export {variable}=$(openssl rand -hex 24)`; "
            "`python -m mlops up` generates one)"
        )
    return str(value)


def retrain_token(settings: Settings) -> str:
    return required_secret(settings, "retrain_token", "the retrain trigger needs a secret token")


def retrain_trigger_url(settings: Settings, base_url: str | None = None) -> str:
    """Where Grafana's webhook posts: the retrain pipeline's Mage API trigger, token included."""
    base = (base_url or settings.orchestration.mage_url).rstrip("/")
    schedule = settings.orchestration.retrain_schedule_id
    return f"{base}/api/pipeline_schedules/{schedule}/pipeline_runs/{retrain_token(settings)}"


def mage_env(
    settings: Settings, database_url: str | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment of Mage processes: its database, its data dir, the platform's own settings."""
    base = os.environ if environ is None else environ
    env = {"MAGE_DATA_DIR": base.get("MAGE_DATA_DIR", str(settings.work_dir / "mage_data"))}
    if settings.source_file is not None:  # `python -m mlops --config FILE`: the blocks read MLOPS_CONFIG
        env["MLOPS_CONFIG"] = str(settings.source_file)
    if database_url:
        env[DATABASE_ENV] = store.normalise_url(database_url)
    return env


def run_headless(
    settings: Settings,
    pipeline: str,
    variables: dict[str, object] | None = None,
    env: dict[str, str] | None = None,
    output: IO[str] | None = None,
) -> int:
    """``mage run mlops <pipeline>`` (through :mod:`mlops.core.platform.mage_launcher`); return its exit code.

    ``env`` replaces this process's environment as the base (Mage's variables are added to it); ``output``
    takes the run's stdout and stderr (default: this process's)."""
    command = [sys.executable, "-m", "mlops.core.platform.mage_launcher", "run", "mlops", pipeline]
    if variables:
        command += ["--runtime-vars", json.dumps(variables)]
    base = os.environ if env is None else env
    stderr = subprocess.STDOUT if output is not None else None
    return subprocess.call(
        command, cwd=settings.root, env={**base, **mage_env(settings, environ=base)}, stdout=output, stderr=stderr
    )


def bootstrap(settings: Settings, database_url: str, timeout: float = 300) -> None:
    """Run Mage's migrations on ``database_url`` and pin the retrain trigger (idempotent)."""
    retrain_token(settings)  # fail here, with the hint, rather than in the child
    env = {**os.environ, **mage_env(settings, database_url)}
    result = subprocess.run(
        [sys.executable, "-m", "mlops.core.platform.orchestration", "bootstrap"],
        cwd=settings.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise OrchestrationError(f"Mage bootstrap failed:\n{(result.stdout + result.stderr)[-3000:]}")


def _pin_retrain_trigger(settings: Settings) -> str:
    """In the bootstrap child: Mage's migrations, then the retrain trigger row with its fixed id and token."""
    from mage_ai.settings.repo import set_repo_path

    set_repo_path(str(project_dir(settings)))
    from mage_ai.data_preparation.models.triggers import ScheduleStatus, ScheduleType
    from mage_ai.orchestration.db import db_connection
    from mage_ai.orchestration.db.database_manager import database_manager
    from mage_ai.orchestration.db.models.schedules import PipelineSchedule
    from mage_ai.settings.repo import get_repo_path

    database_manager.run_migrations()
    db_connection.start_session()
    session = db_connection.session
    schedule_id = settings.orchestration.retrain_schedule_id
    values = {
        "name": RETRAIN_TRIGGER_NAME,
        "pipeline_uuid": RETRAIN_PIPELINE,
        "schedule_type": ScheduleType.API,
        "status": ScheduleStatus.ACTIVE,
        "token": retrain_token(settings),
        "repo_path": get_repo_path(),
    }
    row = session.get(PipelineSchedule, schedule_id)
    if row is not None and (row.pipeline_uuid, row.name) != (RETRAIN_PIPELINE, RETRAIN_TRIGGER_NAME):
        raise OrchestrationError(
            f"pipeline_schedule {schedule_id} belongs to {row.pipeline_uuid!r} ({row.name!r}), not the retrain "
            "trigger: set MLOPS_ORCHESTRATION__RETRAIN_SCHEDULE_ID to a free id or use a fresh Mage database"
        )
    if row is None:
        session.add(PipelineSchedule(id=schedule_id, **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)
    session.commit()
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        # An explicit id does not advance the sequence: move it past ours, or Mage's next trigger collides.
        from sqlalchemy import text

        session.execute(
            text(
                "SELECT setval(pg_get_serial_sequence('pipeline_schedule', 'id'), "
                "(SELECT max(id) FROM pipeline_schedule))"
            )
        )
        session.commit()
    return f"retrain trigger pinned: pipeline_schedule {schedule_id} ({RETRAIN_TRIGGER_NAME!r})"


def owner_password(settings: Settings) -> str:
    return required_secret(settings, "mage_owner_password", "Mage requires a login and has no default password")


def mage_server(
    settings: Settings, database_url: str, log_path: Path, scheduler_interval_seconds: int | None = None
) -> services.ManagedProcess:
    """``mage start mlops`` on the host and port of ``orchestration.mage_url``, on the given database, with
    login required (the owner is created on the first start)."""
    where = urlsplit(settings.orchestration.mage_url)
    host, port = where.hostname or "127.0.0.1", where.port or 6789
    env = mage_env(settings, database_url)
    env |= {
        "REQUIRE_USER_AUTHENTICATION": "1",
        "DEFAULT_OWNER_EMAIL": settings.orchestration.mage_owner_email,
        "DEFAULT_OWNER_PASSWORD": owner_password(settings),
    }
    if scheduler_interval_seconds is not None:
        env["SCHEDULER_TRIGGER_INTERVAL"] = str(scheduler_interval_seconds)
    # Mage's CLI with its process queue's races closed (mlops.core.platform.mage_launcher)
    command = [
        sys.executable,
        "-m",
        "mlops.core.platform.mage_launcher",
        "start",
        "mlops",
        "--host",
        host,
        "--port",
        str(port),
    ]
    return services.ManagedProcess("mage", command, log_path, env=env, cwd=settings.root)


class MageApi:
    """Mage's REST API as its owner: logs in once (``POST /api/sessions``) and sends the session cookie, as
    Mage's own UI does. An answer carrying ``error`` raises :class:`OrchestrationError` (Mage answers
    errors with HTTP 200)."""

    def __init__(self, settings: Settings, base_url: str | None = None, timeout: float = 30) -> None:
        from mage_ai.settings.server import OAUTH2_APPLICATION_CLIENT_ID  # the id of Mage's own web client

        self.base = (base_url or settings.orchestration.mage_url).rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.http.headers["X-API-KEY"] = OAUTH2_APPLICATION_CLIENT_ID
        login = {"email": settings.orchestration.mage_owner_email, "password": owner_password(settings)}
        session = self._answer(self.http.post(f"{self.base}/api/sessions", json={"session": login}, timeout=timeout))
        self.http.cookies.set("oauth_token", session["session"]["token"])

    def _answer(self, response: requests.Response) -> dict[str, Any]:
        body = response.json()
        if response.status_code != 200 or "error" in body:
            error = body.get("error", {})
            raise OrchestrationError(f"Mage API {response.request.method} {response.url}: {error.get('message', body)}")
        return dict(body)

    def get(self, path: str) -> dict[str, Any]:
        return self._answer(self.http.get(f"{self.base}{path}", timeout=self.timeout))

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._answer(self.http.post(f"{self.base}{path}", json=body, timeout=self.timeout))

    def pipeline_run(self, run_id: int) -> dict[str, Any]:
        """``status`` is initial, running, completed, failed or cancelled."""
        return dict(self.get(f"/api/pipeline_runs/{run_id}")["pipeline_run"])

    def block_runs(self, run_id: int) -> list[dict[str, Any]]:
        """The run's block runs in the order they were created."""
        found = self.get(f"/api/block_runs?pipeline_run_id={run_id}").get("block_runs", [])
        return sorted(found, key=lambda block: int(block["id"]))

    def latest_runs(self, limit: int = 5) -> str:
        """The latest pipeline runs with each block run's status, a line per run: where a stuck run stopped
        (a run that started another, as retrain starts deploy, shows both)."""
        lines = []
        for run in self.get(f"/api/pipeline_runs?_limit={limit}")["pipeline_runs"]:
            blocks = ", ".join(f"{b['block_uuid']} {b['status']}" for b in self.block_runs(int(run["id"])))
            lines.append(f"run {run['id']} of {run['pipeline_uuid']}: {run['status']} ({blocks or 'no block runs'})")
        return "\n".join(lines)

    def wait_run(self, run_id: int, timeout: float, poll_seconds: float = 2.0) -> dict[str, Any]:
        """The run once it has finished (whatever its status); after ``timeout`` :class:`RunTimeout`."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.pipeline_run(run_id)
            if run["status"] in FINISHED:
                return run
            if time.monotonic() > deadline:
                raise RunTimeout(
                    f"pipeline run {run_id} did not finish in {timeout:.0f} s; the latest runs:\n{self.latest_runs()}"
                )
            time.sleep(poll_seconds)


def pipeline_runner(block_kwargs: dict[str, Any], timeout: float = 3600) -> Callable[[str, dict[str, Any]], None]:
    """How a block runs another pipeline: through the Mage server when it runs on one, else in-process.

    On a server (the block has a ``pipeline_run_id``) the run is created through Mage's trigger API, so it
    is scheduled, logged and visible like any other; headless (``mage run``) it executes synchronously.
    Either way a failed run raises.
    """
    on_server = block_kwargs.get("pipeline_run_id") is not None

    def run(name: str, variables: dict[str, Any]) -> None:
        if on_server:
            from mage_ai.orchestration.triggers.api import trigger_pipeline

            trigger_pipeline(
                name,
                variables=variables,
                check_status=True,
                error_on_failure=True,
                poll_interval=2,
                poll_timeout=timeout,
                verbose=False,
            )
        else:
            from mage_ai.data_preparation.models.pipeline import Pipeline

            Pipeline.get(name).execute_sync(global_vars=variables, update_status=False)

    return run


def main(argv: list[str]) -> int:
    from mlops.core import config

    if argv != ["bootstrap"]:
        print("usage: python -m mlops.core.platform.orchestration bootstrap", file=sys.stderr)
        return 2
    if not os.environ.get(DATABASE_ENV):
        print(f"{DATABASE_ENV} is not set: which database should Mage use?", file=sys.stderr)
        return 2
    print(_pin_retrain_trigger(config.load()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
