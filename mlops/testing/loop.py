"""The whole loop on one table, by configuration alone, through the same Mage pipelines a user runs.

prepare, train, deploy (which starts the predictor), one request served, test, monitor a batch and a
window of the prediction log, retrain by hand, retrain from an alert (the webhook body Grafana sends), then
the predictor is stopped. Each stage's exit code, wall time and output (a log file per stage) is kept, and
the loop goes on past a failed stage only where the next one does not need it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from mlops.core import config, services
from mlops.core.data import preparation
from mlops.core.monitoring import alerting
from mlops.core.platform import orchestration
from mlops.core.serving import native_predictor, scoring
from mlops.testing.tables import Table

# Small budgets: the matrix runs every table in the suite on two cores.
FAMILIES = ["logistic_regression", "xgboost"]
SEARCH = {"max_trials": 2, "time_budget_seconds": 5}
STAGES = (
    "prepare",
    "train",
    "deploy",
    "request",
    "test",
    "monitor batch",
    "monitor window",
    "retrain by hand",
    "retrain from alert",
)


@dataclass
class Stage:
    name: str
    ok: bool
    seconds: float
    log: Path | None = None
    detail: str = ""


@dataclass
class LoopResult:
    table: Table
    rows: int
    features: int
    stages: list[Stage] = field(default_factory=list)
    champion: dict[str, Any] = field(default_factory=dict)  # name, version, test metrics
    retrains: list[dict[str, Any]] = field(default_factory=list)  # the alerts table: status, action, outcome

    @property
    def passed(self) -> list[str]:
        return [s.name for s in self.stages if s.ok]

    @property
    def failed(self) -> list[Stage]:
        return [s for s in self.stages if not s.ok]

    def failure_report(self, lines: int = 40) -> str:
        """Each failed stage with the end of its output."""
        parts = []
        for stage in self.failed:
            tail = ""
            if stage.log is not None and stage.log.is_file():
                tail = "\n".join(stage.log.read_text(errors="replace").splitlines()[-lines:])
            parts.append(f"--- {self.table.name}: {stage.name} failed ({stage.detail})\n{tail}")
        return "\n".join(parts)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.table.name,
            "source": self.table.source,
            "shape": self.table.shape,
            "rows": self.rows,
            "features": self.features,
            "stages": self.passed,
            "failed": [s.name for s in self.failed],
            "seconds": round(sum(s.seconds for s in self.stages), 1),
            "stage_seconds": {s.name: s.seconds for s in self.stages},
            "champion_version": self.champion.get("version"),
            "test_roc_auc": self.champion.get("test_roc_auc"),
            "test_pr_auc": self.champion.get("test_pr_auc"),
            "retrains": self.retrains,
        }


def write_config(table: Table, folder: Path, tracking_uri: str) -> Path:
    """The table's CSV and a configuration file whose every store and path is inside ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    csv = table.write_csv(folder)
    port = services.free_port()
    spec = {
        "project": table.name,
        "paths": {"work_dir": str(folder / "work"), "data_dir": str(folder)},
        "stores": {
            "tracking_uri": tracking_uri,
            "artifact_location": str(folder / "mlartifacts"),
            "experiment": f"matrix-{table.name}",
            "monitoring_db": f"sqlite:///{folder / 'monitoring.db'}",
        },
        "dataset": {"name": table.name, "source": {"path": str(csv)}, **table.dataset},
        "training": {"model_name": f"matrix-{table.name}", "families": FAMILIES, "search": SEARCH, "n_jobs": 1},
        "serving": {
            "port": port,
            "url": f"http://127.0.0.1:{port}",
            "workers": 1,
            "payload_dir": str(folder / "payload"),
            "spool_dir": str(folder / "spool"),
        },
        "monitoring": {"reports_dir": str(folder / "reports")},
    }
    path = folder / f"{table.name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def clean_environment(config_file: Path, folder: Path) -> dict[str, str]:
    """This process's environment without any MLOPS_* override (the file alone configures the loop)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(config.ENV_PREFIX) or k == "MLOPS_ROOT"}
    return {**env, "MLOPS_CONFIG": str(config_file), "MAGE_DATA_DIR": str(folder / "mage_data")}


def firing_alert(settings: config.Settings) -> dict[str, Any]:
    """The webhook body Grafana's contact point posts when the prediction-drift rule fires now."""
    now = datetime.now(UTC)
    values, labels = {"A": 0.3, "B": 0.1}, {alerting.MODEL_LABEL: settings.training.model_name}
    evaluation = alerting.AlertEvaluation(settings.monitoring.alert_name, "Alerting", values, (now, now), labels=labels)
    return alerting.notification(evaluation)


def run_loop(table: Table, folder: Path, tracking_uri: str, progress: Callable[[str], None] = print) -> LoopResult:
    config_file = write_config(table, folder, tracking_uri)
    env = clean_environment(config_file, folder)
    settings = config.load(config_file, environ=env)
    frame = table.build()
    result = LoopResult(table, rows=len(frame), features=len(settings.dataset.features))
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)

    def stage(name: str, action: Callable[[Path], tuple[bool, str]]) -> bool:
        log = logs / f"{name.replace(' ', '_')}.log"
        started = time.monotonic()
        try:
            ok, detail = action(log)
        except Exception as exc:  # a stage that raises is a failed stage, reported with the error
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        seconds = round(time.monotonic() - started, 1)
        result.stages.append(Stage(name, ok, seconds, log, detail))
        progress(f"{table.name}: {name} {'ok' if ok else 'FAILED'} in {seconds:.0f} s {detail}")
        return ok

    def pipeline(name: str, variables: dict[str, Any] | None = None) -> Callable[[Path], tuple[bool, str]]:
        def run(log: Path) -> tuple[bool, str]:
            with log.open("w") as output:
                code = orchestration.run_headless(settings, name, variables, env=env, output=output)
            return code == 0, f"exit {code}"

        return run

    def one_request(_: Path) -> tuple[bool, str]:
        batch = preparation.load_batch(settings, preparation.batch_names(settings)[0])
        record = scoring.frame_records(batch.head(1), settings.dataset.features)[0]
        answer = requests.post(f"{settings.serving.url}/predict", json=record, timeout=30)
        body = answer.json()
        probability = body.get("predictions", [{}])[0].get("probability")
        ok = answer.status_code == 200 and isinstance(probability, float) and 0 <= probability <= 1
        return ok, f"HTTP {answer.status_code}: {json.dumps(body)[:300]}"

    started_at = datetime.now(UTC)
    try:
        if not (stage("prepare", pipeline("prepare")) and stage("train", pipeline("train"))):
            return result
        if stage("deploy", pipeline("deploy")):
            stage("request", one_request)
        stage("test", pipeline("test"))
        stage("monitor batch", pipeline("monitor", {"batch": preparation.batch_names(settings)[0]}))
        window = {"window_start": started_at.isoformat(), "window_end": datetime.now(UTC).isoformat()}
        stage("monitor window", pipeline("monitor", window))
        stage("retrain by hand", pipeline("retrain"))
        stage("retrain from alert", pipeline("retrain", firing_alert(settings)))
        result.champion = champion_summary(settings)
        result.retrains = retrain_outcomes(settings)
    finally:
        native_predictor.stop(settings)
    return result


def champion_summary(settings: config.Settings) -> dict[str, Any]:
    from mlops.core.lifecycle import promotion
    from mlops.core.training import registry

    version = promotion.champion_version(settings)
    if version is None:
        return {}
    client = registry.configure(settings)
    tags = client.get_model_version(settings.training.model_name, version).tags
    return {
        "version": version,
        **{k: round(float(tags[k]), 4) for k in ("test_roc_auc", "test_pr_auc") if k in tags},
    }


def retrain_outcomes(settings: config.Settings) -> list[dict[str, Any]]:
    """What retrain recorded for each request (by hand or an alert), oldest first."""
    from mlops.core.lifecycle import retrain

    return [{key: row[key] for key in ("status", "action", "outcome")} for row in retrain.alerts(settings)]
