"""The compose stack, driven from the host: start it on free ports, run pipelines through Mage's API as a user's
clicks would, read its stores, crash a container, measure it, take it down.

The stack test (``make test-stack``) and the stack benchmark (``benchmarks/stack.py``) share it. Nothing here
reaches into a container but through what a user has: ``docker compose``, the published ports, the owner's
login to Mage, and the secrets in the stack's ``.env``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from mlops.core import config, services
from mlops.core.platform import compose_env, container_engine, orchestration
from mlops.core.platform.container_engine import Engine

# What the stack publishes, and the .env key of each port.
PORTS = {
    "postgres": "POSTGRES_PORT",
    "mlflow": "MLFLOW_PORT",
    "mage": "MAGE_PORT",
    "predictor": "PREDICTOR_PORT",
    "streamlit": "STREAMLIT_PORT",
    "grafana": "GRAFANA_PORT",
}
# Grafana's image cannot be built or pulled without a registry: the stack runs everything else.
RUNNABLE_OFFLINE = ("postgres", "mlflow", "mage", "predictor", "streamlit")
# The compose profiles every command sees (so that ps, logs and down include their containers when they run);
# `up` starts only the services it names.
PROFILES = ("spark",)
# The spark profile: a standalone master and two workers (the mage image); Mage is the driver.
SPARK_SERVICES = ("spark-master", "spark-worker-1", "spark-worker-2")
SPARK_MASTER = "spark://spark-master:7077"
_READ_JSON = (
    "import json, sys, urllib.request; print(json.dumps(json.load(urllib.request.urlopen(sys.argv[1], timeout=10))))"
)


class StackError(RuntimeError):
    """The stack did not do what was asked; the message carries what it said."""


@dataclass
class ComposeStack:
    """One compose project: its ``.env`` (ports and secrets), extra compose files, and the engine it runs on."""

    engine: Engine
    project: str
    env_file: Path
    extra_files: list[Path] = field(default_factory=list)
    profiles: tuple[str, ...] = PROFILES

    @classmethod
    def create(
        cls,
        engine: Engine,
        folder: Path,
        project: str,
        extra_files: list[Path] | None = None,
        settings: dict[str, str] | None = None,
    ) -> ComposeStack:
        """A stack whose ``.env`` (in ``folder``) has generated secrets, free ports and ``settings``."""
        folder.mkdir(parents=True, exist_ok=True)
        env_file = compose_env.ensure(folder / ".env")
        values = {key: str(services.free_port()) for key in PORTS.values()} | (settings or {})
        lines = [line for line in env_file.read_text().splitlines() if line.partition("=")[0] not in values]
        env_file.write_text("\n".join([*lines, *(f"{k}={v}" for k, v in values.items())]) + "\n")
        return cls(engine, project, env_file, list(extra_files or []))

    @property
    def env(self) -> dict[str, str]:
        return compose_env.read(self.env_file)

    def compose(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
        files = container_engine.compose_files()
        for extra in self.extra_files:
            files += ["-f", str(extra)]
        command = [*self.engine.compose, "--project-name", self.project, "--env-file", str(self.env_file), *files]
        for profile in self.profiles:
            command += ["--profile", profile]
        result = subprocess.run(
            [*command, *args],
            env=self.engine.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=container_engine.ROOT,
        )
        if check and result.returncode != 0:
            raise StackError(f"docker compose {' '.join(args)} failed:\n{(result.stdout + result.stderr)[-4000:]}")
        return result

    def up(self, services_: tuple[str, ...] = RUNNABLE_OFFLINE, timeout: float = 900) -> float:
        """``up --wait``: returns the seconds until every service was healthy."""
        started = time.monotonic()
        self.compose("up", "--detach", "--wait", "--wait-timeout", str(int(timeout)), *services_, timeout=timeout + 60)
        return time.monotonic() - started

    def exec(
        self, service: str, *command: str, env: dict[str, str] | None = None, timeout: float = 900, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``docker compose exec`` (no TTY) of ``command`` in the running ``service``, with extra ``env``."""
        options = [f"--env={key}={value}" for key, value in (env or {}).items()]
        return self.compose("exec", "-T", *options, service, *command, timeout=timeout, check=check)

    def exec_json(self, service: str, code: str, *args: str, timeout: float = 120) -> Any:
        """The JSON the Python ``code`` prints as its last line, run in ``service`` with ``args``."""
        out = self.exec(service, "python", "-c", code, *args, timeout=timeout).stdout
        return json.loads(out.strip().splitlines()[-1])

    def spark_status(self, url: str = "http://spark-master:8080/json/") -> dict[str, Any]:
        """A Spark daemon's web UI JSON (the master's by default; a worker's at ``http://spark-worker-N:8081/json/``),
        read from the Mage container (the UIs are not published)."""
        return dict(self.exec_json("mage", _READ_JSON, url))

    def down(self, volumes: bool = False) -> None:
        self.compose("down", *(["--volumes"] if volumes else []), "--timeout", "30", timeout=300)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.env[PORTS[service]]}"

    def database_url(self, database: str, user: str | None = None, password: str | None = None) -> str:
        env = self.env
        user = user or env.get("POSTGRES_USER", "mlops")
        password = password or env["POSTGRES_PASSWORD"]
        return f"postgresql+psycopg2://{user}:{password}@127.0.0.1:{env['POSTGRES_PORT']}/{database}"

    def settings(self) -> config.Settings:
        """The platform's configuration as seen from the host: the stack's stores through its published ports."""
        env = self.env
        return config.load(
            environ={
                **os.environ,
                "MLOPS_STORES__TRACKING_URI": self.url("mlflow"),
                "MLOPS_STORES__MONITORING_DB": self.database_url(env.get("MONITORING_DB", "monitoring")),
                "MLOPS_SERVING__URL": self.url("predictor"),
                "MLOPS_ORCHESTRATION__MAGE_URL": self.url("mage"),
                "MLOPS_ORCHESTRATION__MAGE_OWNER_EMAIL": env.get("MAGE_OWNER_EMAIL", "owner@mlops.local"),
                "MLOPS_SECRETS__MAGE_OWNER_PASSWORD": env["MAGE_OWNER_PASSWORD"],
                "MLOPS_SECRETS__RETRAIN_TOKEN": env["MLOPS_SECRETS__RETRAIN_TOKEN"],
                "MLOPS_SECRETS__RELOAD_TOKEN": env["MLOPS_SECRETS__RELOAD_TOKEN"],
            }
        )

    def container_id(self, service: str) -> str:
        return self.compose("ps", "--quiet", service).stdout.strip()

    def crash(self, service: str) -> int:
        """SIGKILL the container's main process from the host, as a crash would (``docker kill`` counts as a
        manual stop, which a restart policy honours). Returns the killed host PID."""
        pid = int(self.engine.docker("inspect", "--format", "{{.State.Pid}}", self.container_id(service)).stdout)
        os.kill(pid, 9)
        return pid

    def wait_healthy(self, service: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.engine.docker(
                "inspect",
                "--format",
                "{{.State.Status}} {{.State.Health.Status}}",
                self.container_id(service),
                check=False,
            ).stdout.split()
            if state == ["running", "healthy"]:
                return
            time.sleep(1)
        raise StackError(
            f"{service} is not healthy after {timeout:.0f} s:\n{self.compose('logs', '--tail', '40', service).stdout}"
        )

    def memory_mb(self) -> dict[str, float]:
        """Resident memory of each running service's container, in MB (``docker stats``)."""
        ids = self.compose("ps", "--format", "json").stdout
        names = {}
        for line in ids.splitlines():
            item = json.loads(line)
            names[item["ID"][:12]] = item["Service"]
        out = self.engine.docker("stats", "--no-stream", "--format", "{{.ID}} {{.MemUsage}}", *names).stdout
        usage = {}
        for line in out.splitlines():
            short, amount = line.split()[0][:12], line.split()[1]
            usage[names[short]] = round(_megabytes(amount), 1)
        return usage

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes of this project that still exist."""
        label = f"label=com.docker.compose.project={self.project}"
        found = {}
        for kind, command in (
            ("containers", ["ps", "--all"]),
            ("networks", ["network", "ls"]),
            ("volumes", ["volume", "ls"]),
        ):
            names = self.engine.docker(
                *command, "--filter", label, "--format", "{{.Names}}" if kind == "containers" else "{{.Name}}"
            ).stdout.split()
            found[kind] = names
        return found


def _megabytes(amount: str) -> float:
    units = {"B": 1e-6, "KiB": 1024 / 1e6, "MiB": 1024**2 / 1e6, "GiB": 1024**3 / 1e6, "kB": 1e-3, "MB": 1.0, "GB": 1e3}
    for unit in sorted(units, key=len, reverse=True):
        if amount.endswith(unit):
            return float(amount[: -len(unit)]) * units[unit]
    raise ValueError(f"unknown memory amount {amount!r}")


class MageRuns:
    """Pipeline runs through Mage's API as its owner, the way the UI's "Run@once" does: a one-time trigger
    with the run's variables, which Mage's scheduler starts on its next tick."""

    def __init__(self, settings: config.Settings) -> None:
        self.api = orchestration.MageApi(settings)

    def start(self, pipeline: str, variables: dict[str, Any] | None = None) -> int:
        body = {
            "pipeline_schedule": {
                "name": f"{pipeline} once {uuid.uuid4().hex[:6]}",
                "schedule_type": "time",
                "schedule_interval": "@once",
                "start_time": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                "status": "active",
                "variables": variables or {},
            }
        }
        schedule = self.api.post(f"/api/pipelines/{pipeline}/pipeline_schedules", body)["pipeline_schedule"]
        return int(schedule["id"])

    def runs_of(self, schedule_id: int) -> list[dict[str, Any]]:
        return list(self.api.get(f"/api/pipeline_schedules/{schedule_id}/pipeline_runs")["pipeline_runs"])

    def wait_schedule(self, schedule_id: int, timeout: float = 900) -> dict[str, Any]:
        """The first run of a trigger, once it has finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs_of(schedule_id)
            if runs and runs[0]["status"] in orchestration.FINISHED:
                return runs[0]
            time.sleep(2)
        raise StackError(f"pipeline_schedule {schedule_id}: no finished run after {timeout:.0f} s")

    def wait_run(self, run_id: int, timeout: float = 900) -> dict[str, Any]:
        return self.api.wait_run(run_id, timeout)

    def run(self, pipeline: str, variables: dict[str, Any] | None = None, timeout: float = 900) -> dict[str, Any]:
        """Start ``pipeline`` and wait for it; a run that does not complete raises with its block runs."""
        run = self.wait_schedule(self.start(pipeline, variables), timeout)
        if run["status"] != "completed":
            raise StackError(f"{pipeline} run {run['id']} {run['status']}: {self.failed_blocks(int(run['id']))}")
        return run

    def failed_blocks(self, run_id: int) -> list[str]:
        return [f"{b['block_uuid']}: {b['status']}" for b in self.api.block_runs(run_id) if b["status"] != "completed"]

    def count(self) -> int:
        """Pipeline runs Mage has recorded."""
        answer = self.api.get("/api/pipeline_runs?_limit=1000")
        return int(answer.get("metadata", {}).get("count", len(answer["pipeline_runs"])))


def trigger_webhook(url: str, body: dict[str, Any]) -> int:
    """POST a notification to an API trigger (as Grafana's contact point does): the run it created."""
    response = requests.post(url, json=body, timeout=30)
    answer = response.json()
    if response.status_code != 200 or "error" in answer:  # Mage answers a wrong token with HTTP 200 + error
        raise StackError(f"the trigger refused the notification: {answer}")
    return int(answer["pipeline_run"]["id"])
