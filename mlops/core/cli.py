"""``python -m mlops``: the data step, running pipelines headless, and the demo loop.

Exit codes: 0 success, 1 a pipeline failed, 2 bad input (configuration, data file, arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from mlops.core import config, data, reporting
from mlops.core.validation import DataValidationError

console = Console()
err = Console(stderr=True)
PIPELINES = ("prepare", "train")
BAD_INPUT = 2


def mage_env(settings: config.Settings) -> dict[str, str]:
    """Mage keeps its variables and SQLite database under the work dir unless told otherwise."""
    env = dict(os.environ)
    env.setdefault("MAGE_DATA_DIR", str(settings.work_dir / "mage_data"))
    return env


def run_pipeline(settings: config.Settings, name: str, variables: dict[str, object] | None = None) -> int:
    """Run one Mage pipeline headless (``mage run``); return its exit code."""
    mage = Path(sys.executable).with_name("mage")
    command = [str(mage if mage.exists() else "mage"), "run", "mlops", name]
    if variables:
        command += ["--runtime-vars", json.dumps(variables)]
    console.rule(f"[bold]pipeline {name}")
    return subprocess.call(command, cwd=settings.root, env=mage_env(settings))


def cmd_data(args: argparse.Namespace, settings: config.Settings) -> int:
    frame = data.load_raw(settings, allow_download=not args.no_download)
    path = data.resolve_source(settings, allow_download=False)
    y = data.labels(frame, settings)
    console.print(
        f"[green]valid[/green] {path}: {len(frame):,} rows, {len(frame.columns)} columns, positive rate {y.mean():.3f}"
    )
    return 0


def cmd_run(args: argparse.Namespace, settings: config.Settings) -> int:
    variables = json.loads(args.vars) if args.vars else None
    return run_pipeline(settings, args.pipeline, variables)


def cmd_demo(args: argparse.Namespace, settings: config.Settings) -> int:
    console.rule("[bold]data")
    cmd_data(argparse.Namespace(no_download=False), settings)
    for name in PIPELINES:
        code = run_pipeline(settings, name)
        if code != 0:
            err.print(f"[red]pipeline {name} failed (exit {code})[/red]")
            return code
    board = json.loads((settings.reports_dir / "leaderboard.json").read_text())
    import pandas as pd

    console.rule("[bold]result")
    reporting.show(reporting.leaderboard_table(pd.DataFrame(board), settings.training.selection_metric))
    console.print(f"MLflow: {settings.tracking_uri}  (model {settings.training.model_name!r}, alias challenger)")
    return 0


def cmd_config(args: argparse.Namespace, settings: config.Settings) -> int:
    console.print_json(settings.model_dump_json())
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mlops", description=__doc__)
    p.add_argument("--config", help="configuration file (default: $MLOPS_CONFIG or configs/bank_marketing.yaml)")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data", help="find, download if needed, and validate the raw data file")
    d.add_argument("--no-download", action="store_true", help="fail instead of downloading")
    d.set_defaults(func=cmd_data)
    r = sub.add_parser("run", help="run one Mage pipeline headless")
    r.add_argument("pipeline", choices=PIPELINES)
    r.add_argument("--vars", help="runtime variables as a JSON object")
    r.set_defaults(func=cmd_run)
    demo = sub.add_parser("demo", help="data step, then prepare and train through Mage; print the result")
    demo.set_defaults(func=cmd_demo)
    c = sub.add_parser("config", help="print the resolved configuration")
    c.set_defaults(func=cmd_config)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler: Callable[[argparse.Namespace, config.Settings], int] = args.func
    try:
        settings = config.load(args.config)
        return handler(args, settings)
    except (config.ConfigError, DataValidationError, data.DataSourceError, json.JSONDecodeError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return BAD_INPUT
