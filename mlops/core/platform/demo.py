"""``make demo`` (``python -m mlops demo``): the whole loop through Mage in a few minutes, then what next.

The data step; prepare, train, deploy and test; monitor every batch; the provisioned alert rule evaluated;
on a firing alert retrain (which deploys the new model only if it beats the champion) and test again.
Training searches with ``demo.search`` instead of ``training.search`` (the output says so). Each stage's
wall time goes to ``<reports_dir>/demo.json``. The output is the platform's own: Mage runs through
:mod:`mlops.core.platform.mage_launcher`, which keeps its start-up chatter out, and
:func:`mlops.core.training.registry.quiet_mlflow`
does the same for MLflow. :func:`library_noise` finds lines that still come from a library's logging,
warnings or progress bars; the demo's test requires none.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mlops.core import config, reporting, services
from mlops.core.data import preparation
from mlops.core.platform import orchestration
from mlops.core.serving import native_predictor

PIPELINES = ("prepare", "train", "deploy", "test")
REPORT = "demo.json"

# A line from Python's logging (default and MLflow's format), the warnings module, a tqdm bar, or Mage's prints.
_NOISE = re.compile(
    r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.]+:"
    r"|^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"|\w+Warning: "
    r"|\d+%\|"
    r"|\r"
    r"|^DBT library not installed"
)


def library_noise(output: str) -> list[str]:
    """Lines of ``output`` that a library wrote (logging, warnings, progress bars), not the platform."""
    return [line for line in output.split("\n") if _NOISE.search(line)]


def search_overrides(settings: config.Settings) -> dict[str, str]:
    """The demo's search budget as environment overrides for the pipelines (a variable already set wins)."""
    search = settings.demo.search
    wanted = {
        "MLOPS_TRAINING__SEARCH__TIME_BUDGET_SECONDS": f"{search.time_budget_seconds:g}",
        "MLOPS_TRAINING__SEARCH__MAX_TRIALS": str(search.max_trials),
    }
    return {key: value for key, value in wanted.items() if key not in os.environ}


class Demo:
    def __init__(self, settings: config.Settings, console: Console) -> None:
        self.settings = settings
        self.console = console
        self.stages: dict[str, float] = {}

    def stage(self, name: str, action: Callable[[], int]) -> int:
        started = time.monotonic()
        code = action()
        self.stages[name] = round(time.monotonic() - started, 1)
        status = "[green]done[/green]" if code == 0 else f"[red]failed (exit {code})[/red]"
        self.console.print(f"{name}: {status} in {self.stages[name]:.0f} s")
        return code

    def pipeline(self, name: str, variables: dict[str, object] | None = None, label: str | None = None) -> int:
        def run() -> int:
            self.console.rule(f"[bold]{label or name}")
            return orchestration.run_headless(self.settings, name, variables)

        return self.stage(label or name, run)

    def write_report(self, ok: bool, extra: dict[str, Any]) -> Path:
        report = {"ok": ok, "seconds": round(sum(self.stages.values()), 1), "stages": self.stages, **extra}
        return reporting.write_json(self.settings.reports_dir / REPORT, report)


def run(settings: config.Settings, console: Console, err: Console) -> int:
    from mlops.core.lifecycle import deploy

    token_file = deploy.ensure_reload_token(settings)
    os.environ.update(search_overrides(settings))
    settings = config.load(settings.source_file)  # now with the reload token and the demo's search budget
    for url in (settings.tracking_uri, settings.monitoring_db):
        services.private_sqlite(url)  # the prediction log holds request data: 0600 before anything writes it
    search = settings.training.search
    console.print(
        f"[bold]demo[/bold]: {settings.dataset.name} through Mage; search budget per tuned family "
        f"{search.time_budget_seconds:g} s or {search.max_trials} trials (demo.search; `run train` uses "
        "training.search)"
    )
    demo = Demo(settings, console)

    def data_step() -> int:
        console.rule("[bold]data")
        frame = preparation.load_raw(settings, allow_download=True)
        console.print(f"{preparation.resolve_source(settings, allow_download=False)}: {len(frame):,} rows")
        return 0

    code = demo.stage("data", data_step)
    for name in PIPELINES:
        if code != 0:
            break
        code = demo.pipeline(name)
    extra: dict[str, Any] = {}
    if code == 0:
        code, extra = monitoring_loop(demo)
    demo.write_report(code == 0, extra)
    if code != 0:
        err.print(f"[red]the demo stopped: {list(demo.stages)[-1]} failed[/red] (its output is above)")
        return code
    console.rule("[bold]result")
    console.print(stage_table(demo.stages))
    if token_file is not None:
        console.print(f"generated a reload token for this work dir: {token_file} (mode 0600)")
    what_next(settings, console)
    return 0


def monitoring_loop(demo: Demo) -> tuple[int, dict[str, Any]]:
    """Monitor every batch, evaluate the alert rule, retrain and test on a firing alert; print the gain."""
    from mlops.core.lifecycle import promotion, retrain
    from mlops.core.monitoring import alerting, drift_metrics

    settings, console = demo.settings, demo.console
    batches = preparation.batch_names(settings)
    for batch in batches:
        if (code := demo.pipeline("monitor", {"batch": batch}, label=f"monitor {batch}")) != 0:
            return code, {}
    runs = list(reversed(drift_metrics.runs(settings, limit=len(batches))))
    evaluation = alerting.evaluate(settings)
    console.rule("[bold]alert")
    console.print(reporting.alert_summary(evaluation, settings.monitoring_db))
    before = promotion.champion_version(settings)
    if evaluation.firing:
        for name, variables in (("retrain", alerting.notification(evaluation)), ("test", None)):
            if (code := demo.pipeline(name, variables, label=f"{name} (alert firing)")) != 0:
                return code, {}
    after = promotion.champion_version(settings)
    console.rule("[bold]monitoring loop")
    reporting.show(drift_metrics.summary_table(runs, "monitor runs (champion before retraining)"))
    gains = []
    if before is not None and after is not None and before != after:
        gains = retrain.quality_before_after(settings, before, after)
        for row in gains:
            console.print(
                f"{row['batch']:>16}: ROC-AUC v{before} {row['before']:.4f} -> v{after} {row['after']:.4f}"
                f" ({row['rows']:,} rows the models never saw)"
            )
    fired = "fired" if evaluation.firing else "did not fire"
    console.print(f"alert {evaluation.rule} {fired}; champion v{before} -> v{after}")
    outcome = {"champion_before": before, "champion_after": after, "alert_fired": evaluation.firing}
    return 0, {**outcome, "quality_before_after": gains}


def stage_table(stages: dict[str, float]) -> Table:
    table = Table(title=f"the loop in {sum(stages.values()):.0f} s")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for name, seconds in stages.items():
        table.add_row(name, f"{seconds:.0f}")
    return table


def command_prefix(settings: config.Settings) -> str:
    """How to call the CLI from the project folder: the venv's Python when that is what runs."""
    python = Path(sys.executable)
    if python.is_relative_to(settings.root):
        return f"{python.relative_to(settings.root)} -m mlops"
    return "python -m mlops"


def what_next(settings: config.Settings, console: Console) -> None:
    mlops = command_prefix(settings)
    console.rule("[bold]what next")
    predictor = native_predictor.running(settings)
    if predictor is not None:
        console.print(
            f"still running: the predictor at {settings.serving.url} (pid {predictor.pid}), serving the champion;"
            f" try {settings.serving.url}/model"
        )
        console.print(f"  stop it:            {mlops} down")
    else:
        console.print("nothing of the demo is still running")
    sqlite_stores = settings.tracking_uri.startswith("sqlite:///") and settings.monitoring_db.startswith("sqlite:///")
    if sqlite_stores:
        console.print(f"  see the results:    MLOPS_STACK__DATABASE=sqlite {mlops} up")
        console.print(
            f"                      Mage {settings.orchestration.mage_url}, MLflow http://127.0.0.1:"
            f"{settings.stack.mlflow_port}, Streamlit http://127.0.0.1:{settings.stack.streamlit_port}, "
            "on this run's stores; it replaces the predictor with the stack's own"
        )
    else:
        console.print(f"  see the results:    MLflow {settings.tracking_uri} (the configured stores)")
    console.print(
        "  your own table:     copy configs/bank_marketing.yaml, set its dataset section (file, target, columns,"
        " split),\n                      then MLOPS_CONFIG=configs/<yours>.yaml make demo"
        ' (README: "Pointing it at another dataset")'
    )
    console.print("  the whole stack:    docker compose up (adds Grafana and its alert; docs/operations.md)")
