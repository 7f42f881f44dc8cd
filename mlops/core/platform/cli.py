"""``python -m mlops``: the data step, running pipelines headless, deploy/rollback, and the demo loop.

Exit codes: 0 success, 1 a pipeline failed, 2 bad input (configuration, data file, arguments).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from mlops.core import config, reporting
from mlops.core.data import preparation
from mlops.core.data.validation import DataValidationError

console = reporting.console()
err = reporting.console(stderr=True)
PIPELINES = ("prepare", "train", "deploy", "test", "monitor", "retrain")
BAD_INPUT = 2


def run_pipeline(settings: config.Settings, name: str, variables: dict[str, object] | None = None) -> int:
    """Run one Mage pipeline headless; return its exit code."""
    from mlops.core.platform import orchestration

    console.rule(f"[bold]pipeline {name}")
    return orchestration.run_headless(settings, name, variables)


def cmd_data(args: argparse.Namespace, settings: config.Settings) -> int:
    frame = preparation.load_raw(settings, allow_download=not args.no_download)
    path = preparation.resolve_source(settings, allow_download=False)
    y = preparation.labels(frame, settings)
    console.print(
        f"[green]valid[/green] {path}: {len(frame):,} rows, {len(frame.columns)} columns, positive rate {y.mean():.3f}"
    )
    return 0


def refused_beside_the_stack(settings: config.Settings) -> bool:
    """True (and says why) when the native stack runs on another registry than this command would change."""
    from mlops.core.platform import stack_served_model

    why = stack_served_model.foreign_to_running_stack(settings)
    if why is not None:
        err.print(f"[red]refusing:[/red] {why}", highlight=False)
    return why is not None


def cmd_run(args: argparse.Namespace, settings: config.Settings) -> int:
    if args.pipeline in ("deploy", "retrain") and refused_beside_the_stack(settings):
        return BAD_INPUT
    variables = json.loads(args.vars) if args.vars else None
    return run_pipeline(settings, args.pipeline, variables)


def cmd_deploy(args: argparse.Namespace, settings: config.Settings) -> int:
    if refused_beside_the_stack(settings):
        return BAD_INPUT
    return run_pipeline(settings, "deploy", {"holdout": args.holdout} if args.holdout else None)


def cmd_rollback(args: argparse.Namespace, settings: config.Settings) -> int:
    from mlops.core.lifecycle import deploy, promotion

    if refused_beside_the_stack(settings):
        return BAD_INPUT
    try:
        decision, predictor = deploy.rollback(settings)
    except promotion.DeployError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return BAD_INPUT
    console.print(f"[green]rolled back[/green]: {decision.reason}")
    console.print(predictor)
    return 0


def cmd_payload(args: argparse.Namespace, settings: config.Settings) -> int:
    from mlops.core.lifecycle import deploy, promotion

    if refused_beside_the_stack(settings):
        return BAD_INPUT
    version = args.version or promotion.champion_version(settings)
    folder = deploy.write_payload(settings, version)
    console.print(f"payload for version {version or '(none: no champion yet)'} written to {folder}")
    return 0


def cmd_demo(args: argparse.Namespace, settings: config.Settings) -> int:
    from mlops.core.platform import demo

    if refused_beside_the_stack(settings):
        return BAD_INPUT
    return demo.run(settings, console, err)


def cmd_monitor(args: argparse.Namespace, settings: config.Settings) -> int:
    from mlops.core.monitoring import monitored_inputs

    try:  # check the input here, so that bad input exits 2 before Mage starts
        if args.batch:
            monitored_inputs.check_frame(
                monitored_inputs.read_batch(settings, args.batch), settings, f"batch {args.batch!r}"
            )
            return run_pipeline(settings, "monitor", {"batch": args.batch})
        if not (args.start and args.end):
            raise monitored_inputs.MonitorInputError(
                "give a batch name, or --start and --end of a prediction-log window"
            )
        monitored_inputs.parse_window(args.start, args.end)
    except monitored_inputs.MonitorInputError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return BAD_INPUT
    return run_pipeline(settings, "monitor", {"window_start": args.start, "window_end": args.end})


def cmd_score(args: argparse.Namespace, settings: config.Settings) -> int:
    from mlops.core.lifecycle import batch_scoring, champion_scoring

    if args.engine:
        settings = settings.model_copy(update={"compute": settings.compute.model_copy(update={"engine": args.engine})})
    where = settings.compute.spark_master if settings.compute.engine == "spark" else "this process"
    console.print(f"scoring {args.input} with the champion on {settings.compute.engine} ({where})")
    try:
        result = batch_scoring.score_table(settings, Path(args.input), Path(args.output))
    except champion_scoring.NoChampion as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return BAD_INPUT
    console.print(
        f"[green]scored[/green] {result.rows:,} rows with v{result.model_version} in {result.seconds:.1f} s "
        f"({result.positives:,} positive decisions) -> {result.output}"
    )
    return 0


def cmd_alert_check(args: argparse.Namespace, settings: config.Settings) -> int:
    """Evaluate the provisioned Grafana alert rule's own SQL on the monitoring database (no Grafana needed)."""
    from mlops.core.monitoring import alerting

    console.print(reporting.alert_summary(alerting.evaluate(settings), settings.monitoring_db))
    return 0


def cmd_config(args: argparse.Namespace, settings: config.Settings) -> int:
    console.print_json(settings.model_dump_json())
    return 0


def cmd_up(args: argparse.Namespace, settings: config.Settings) -> int:
    from mlops.core import services
    from mlops.core.platform import stack, stack_errors, stack_state

    try:
        stack.up(settings, say=console.print, discard_served_model=args.discard_served_model)
    except (stack_errors.PortTaken, stack_errors.ServedModelMismatch) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return BAD_INPUT
    except (stack_errors.StackError, services.ServiceError) as exc:
        err.print(f"[red]the stack did not come up:[/red] {exc}", highlight=False)
        return 1
    console.print(stack.status_table(stack.status(settings)))
    env_file = stack_state.run_folder(settings) / stack_state.ENV_FILE
    console.print(
        f"logs and pids: {stack_state.run_folder(settings)}; point a shell at this stack: set -a; . {env_file}; set +a"
    )
    return 0


def cmd_down(args: argparse.Namespace, settings: config.Settings) -> int:
    from mlops.core.platform import stack

    stopped = stack.down(settings)
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing the platform started is running")
    return 0


def cmd_status(args: argparse.Namespace, settings: config.Settings) -> int:
    from mlops.core.platform import stack, stack_state

    rows = stack.status(settings)
    if not rows:
        console.print(
            f"the stack is not running (no state in {stack_state.run_folder(settings)}); "
            "start it with `python -m mlops up`"
        )
        return 1
    console.print(stack.status_table(rows))
    return 0 if all(row.status in ("healthy", "not started") for row in rows) else 1


def cmd_images(args: argparse.Namespace, settings: config.Settings) -> int:
    """A Docker engine (started if none answers), base images (offline stand-ins), then every image."""
    from mlops.core.platform import compose_env, container_engine

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
    demo = sub.add_parser(
        "demo",
        help="the whole loop through Mage with a small search budget; leaves the predictor up and says what next",
    )
    demo.set_defaults(func=cmd_demo)
    up = sub.add_parser("up", help="start PostgreSQL, MLflow, Mage, the predictor, Streamlit (and Grafana) locally")
    up.add_argument(
        "--discard-served-model",
        action="store_true",
        help="when the predictor's payload holds a model this stack's registry has no champion for "
        "(after `make demo`, say), move it aside and start with no model served instead of refusing",
    )
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop every process `up` started and the predictor deploy started")
    down.set_defaults(func=cmd_down)
    st = sub.add_parser("status", help="health of each service `up` started and of the predictor deploy started")
    st.set_defaults(func=cmd_status)
    mon = sub.add_parser("monitor", help="run the monitor pipeline on a batch or a window of the prediction log")
    mon.add_argument("batch", nargs="?", help="a prepared monitoring batch, e.g. summer")
    mon.add_argument("--start", help="window start (ISO time) of the prediction log")
    mon.add_argument("--end", help="window end (ISO time)")
    mon.set_defaults(func=cmd_monitor)
    sc = sub.add_parser("score", help="score a table (Parquet or CSV file or folder) with the champion")
    sc.add_argument("input", help="a .parquet or .csv file, or a folder of them")
    sc.add_argument("output", help="where the rows with probability and decision go (Parquet)")
    sc.add_argument("--engine", choices=("pandas", "spark"), help="overrides compute.engine")
    sc.set_defaults(func=cmd_score)
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
    except (config.ConfigError, DataValidationError, preparation.DataSourceError, json.JSONDecodeError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return BAD_INPUT
