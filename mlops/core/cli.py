"""``python -m mlops``: the data step, running pipelines headless, deploy/rollback, and the demo loop.

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
PIPELINES = ("prepare", "train", "deploy", "test")
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


def cmd_deploy(args: argparse.Namespace, settings: config.Settings) -> int:
    return run_pipeline(settings, "deploy", {"holdout": args.holdout} if args.holdout else None)


def cmd_rollback(args: argparse.Namespace, settings: config.Settings) -> int:
    from mlops.core import deploy

    try:
        decision, predictor = deploy.rollback(settings)
    except deploy.DeployError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return BAD_INPUT
    console.print(f"[green]rolled back[/green]: {decision.reason}")
    console.print(predictor)
    return 0


def cmd_payload(args: argparse.Namespace, settings: config.Settings) -> int:
    from mlops.core import deploy

    version = args.version or deploy.champion_version(settings)
    folder = deploy.write_payload(settings, version)
    console.print(f"payload for version {version or '(none: no champion yet)'} written to {folder}")
    return 0


def cmd_demo(args: argparse.Namespace, settings: config.Settings) -> int:
    from mlops.core import deploy

    token_file = deploy.ensure_reload_token(settings)
    settings = config.load(settings.source_file)  # now with the session's reload token
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
    console.print(f"MLflow: {settings.tracking_uri}  (model {settings.training.model_name!r})")
    console.print(f"champion: version {deploy.champion_version(settings)}")
    if token_file is not None:
        console.print(f"generated a reload token for this session: {token_file}")
    console.print(
        f"[bold green]the predictor answers at {settings.serving.url}[/bold green] (try {settings.serving.url}/model)"
    )
    return 0


def cmd_config(args: argparse.Namespace, settings: config.Settings) -> int:
    console.print_json(settings.model_dump_json())
    return 0


def cmd_up(args: argparse.Namespace, settings: config.Settings) -> int:
    from mlops.core import services, stack

    try:
        stack.up(settings, say=console.print)
    except stack.PortTaken as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return BAD_INPUT
    except (stack.StackError, services.ServiceError) as exc:
        err.print(f"[red]the stack did not come up:[/red] {exc}", highlight=False)
        return 1
    console.print(stack.status_table(stack.status(settings)))
    env_file = stack.run_folder(settings) / stack.ENV_FILE
    console.print(
        f"logs and pids: {stack.run_folder(settings)}; point a shell at this stack: set -a; . {env_file}; set +a"
    )
    return 0


def cmd_down(args: argparse.Namespace, settings: config.Settings) -> int:
    from mlops.core import stack

    stopped = stack.down(settings)
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing of the stack was running")
    return 0


def cmd_status(args: argparse.Namespace, settings: config.Settings) -> int:
    from mlops.core import stack

    rows = stack.status(settings)
    if not rows:
        console.print(
            f"the stack is not running (no state in {stack.run_folder(settings)}); start it with `python -m mlops up`"
        )
        return 1
    console.print(stack.status_table(rows))
    return 0 if all(row.status in ("healthy", "not started") for row in rows) else 1


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
    dep = sub.add_parser("deploy", help="run the deploy pipeline: promote the challenger if better, switch")
    dep.add_argument("--holdout", nargs="+", metavar="PART", help="held-out parts, e.g. test batch:summer")
    dep.set_defaults(func=cmd_deploy)
    rb = sub.add_parser("rollback", help="make the previous champion the champion again and switch the predictor")
    rb.set_defaults(func=cmd_rollback)
    pl = sub.add_parser("payload", help="write the predictor payload (default: for the current champion)")
    pl.add_argument("--version", help="registered version to package instead of the champion")
    pl.set_defaults(func=cmd_payload)
    demo = sub.add_parser("demo", help="data, prepare, train, deploy and test through Mage; leaves the predictor up")
    demo.set_defaults(func=cmd_demo)
    up = sub.add_parser("up", help="start PostgreSQL, MLflow, Mage, the predictor, Streamlit (and Grafana) locally")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop every process `up` started")
    down.set_defaults(func=cmd_down)
    st = sub.add_parser("status", help="health of each service `up` started")
    st.set_defaults(func=cmd_status)
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
