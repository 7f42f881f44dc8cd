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
from typing import Any

from mlops.core import config, data, reporting
from mlops.core.validation import DataValidationError

console = reporting.console()
err = reporting.console(stderr=True)
PIPELINES = ("prepare", "train", "deploy", "test", "monitor", "retrain")
DEMO_PIPELINES = ("prepare", "train", "deploy", "test")
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
    for name in DEMO_PIPELINES:
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
    return demo_monitoring(settings)


def demo_monitoring(settings: config.Settings) -> int:
    """The rest of the loop: monitor every batch, evaluate the alert, retrain (deploys inside), test."""
    from mlops.core import alerting, deploy, monitoring, retrain

    before = deploy.champion_version(settings)
    for batch in data.batch_names(settings):
        if (code := run_pipeline(settings, "monitor", {"batch": batch})) != 0:
            return code
    runs = {r["batch"]: r for r in reversed(monitoring.runs(settings, limit=len(data.batch_names(settings))))}
    evaluation = evaluate_alert(settings)
    if evaluation.firing:
        for name, variables in (("retrain", alerting.notification(evaluation)), ("test", None)):
            if (code := run_pipeline(settings, name, variables)) != 0:
                return code
    after = deploy.champion_version(settings)
    console.rule("[bold]monitoring loop")
    reporting.show(monitoring.summary_table(list(runs.values()), "monitor runs (champion before retraining)"))
    if before is not None and after is not None:
        for row in retrain.quality_before_after(settings, before, after):
            console.print(
                f"{row['batch']:>16}: champion ROC-AUC v{before} {row['before']:.4f} -> v{after} {row['after']:.4f}"
                f" ({row['rows']:,} rows)"
            )
    fired = "fired" if evaluation.firing else "did not fire"
    console.print(f"alert {evaluation.rule} {fired} (A = {evaluation.values.get('A')}); champion v{before} -> v{after}")
    return 0


def cmd_monitor(args: argparse.Namespace, settings: config.Settings) -> int:
    from mlops.core import monitoring

    try:  # check the input here, so that bad input exits 2 before Mage starts
        if args.batch:
            monitoring.check_frame(monitoring.read_batch(settings, args.batch), settings, f"batch {args.batch!r}")
            return run_pipeline(settings, "monitor", {"batch": args.batch})
        if not (args.start and args.end):
            raise monitoring.MonitorInputError("give a batch name, or --start and --end of a prediction-log window")
        monitoring.parse_window(args.start, args.end)
    except monitoring.MonitorInputError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return BAD_INPUT
    return run_pipeline(settings, "monitor", {"window_start": args.start, "window_end": args.end})


def cmd_alert_check(args: argparse.Namespace, settings: config.Settings) -> int:
    evaluate_alert(settings)
    return 0


def evaluate_alert(settings: config.Settings) -> Any:
    """Evaluate the provisioned Grafana alert rule's own SQL on the monitoring database (no Grafana needed)."""
    from mlops.core import alerting

    evaluation = alerting.evaluate(settings)
    console.rule("[bold]alert evaluation")
    console.print(
        f"no Grafana in this run: evaluated the provisioned rule {evaluation.rule!r} "
        f"({alerting.RULES_FILE}) with its own SQL on {settings.monitoring_db.split('://', 1)[0]}"
    )
    values = ", ".join(f"{k} = {v:.4g}" if v is not None else f"{k} = no data" for k, v in evaluation.values.items())
    console.print(f"state: [bold]{evaluation.state}[/bold] ({values})")
    return evaluation


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


def cmd_images(args: argparse.Namespace, settings: config.Settings) -> int:
    """A Docker engine (started if none answers), base images (offline stand-ins), then every image."""
    from mlops.core import compose_env, container_engine

    engine = container_engine.find_or_start_engine(console.print)
    try:
        engine.compose = container_engine.compose_command(engine, console.print)
        for tag, how in container_engine.ensure_base_images(engine, console.print).items():
            console.print(f"base image {tag}: {how}")
        env = compose_env.read(compose_env.ensure())
        built = container_engine.build_services(engine, env, console.print, no_cache=args.no_cache)
    except container_engine.EngineError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return 1
    finally:
        if args.keep_engine and engine.pid is not None:
            console.print(
                f"the Docker engine keeps running (pid {engine.pid}): export DOCKER_HOST={engine.env['DOCKER_HOST']}"
            )
        else:
            engine.stop()
    console.print(reporting.image_table(built))
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
    mon = sub.add_parser("monitor", help="run the monitor pipeline on a batch or a window of the prediction log")
    mon.add_argument("batch", nargs="?", help="a prepared monitoring batch, e.g. summer")
    mon.add_argument("--start", help="window start (ISO time) of the prediction log")
    mon.add_argument("--end", help="window end (ISO time)")
    mon.set_defaults(func=cmd_monitor)
    ac = sub.add_parser("alert-check", help="evaluate the provisioned Grafana alert rule on the monitoring DB")
    ac.set_defaults(func=cmd_alert_check)
    im = sub.add_parser("images", help="build every image of the compose stack (an engine and stand-ins if needed)")
    im.add_argument("--keep-engine", action="store_true", help="leave an engine this started running")
    im.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    im.set_defaults(func=cmd_images)
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
