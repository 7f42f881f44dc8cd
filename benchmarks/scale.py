"""What each stage costs as rows grow: prepare, train, monitor and score at 1x, 10x and 100x the bank table.

The tables are ``benchmarks.scaled_table`` (45,211 / 452,110 / 4,521,100 rows, seeded). Each stage runs in a
process of its own, so its peak RSS (``wait4``'s ``ru_maxrss``) is that stage's alone:

- **prepare**: read and validate the CSV, split it, write the Parquet splits and batches (the prepare pipeline's
  calls);
- **train**: one family at fixed parameters (XGBoost, ``PARAMS``, native categories) on the train split, then its
  test ROC-AUC; the fitted pipeline is then registered as the champion in the work dir's MLflow (not timed);
- **monitor**: the monitor's ``drift_metrics.monitor`` on the whole table as one prepared batch (exact counts,
  Evidently on a ``monitoring.drift_sample_rows`` sample), reading it included;
- **score**: the champion's compiled scorer over the whole table in process (``frame_scoring.probabilities``);
  reading the table is timed apart (``score_read_seconds_*``).

At 1x it also records the quality of native categories against one-hot (same parameters, same splits) and
Spark's parity: the table scored on ``local[2]`` through ``spark_scoring`` against the pandas engine, as
``spark_parity_max_abs_diff``. At 1x and 10x, prepare, train and monitor also run on Spark ``local[2]``
(``spark_*``: seconds, the session's start apart, and the trained model's ``spark_train_parity_max_abs_diff``
against Spark's own predictions). ``growth_*`` is the 10x-to-100x cost ratio over 10: 1.0 is linear.

Writes ``benchmarks/results/scale.json``; takes about ten minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from benchmarks import write_result
from benchmarks.scaled_table import write_scaled
from mlops.core import config, reporting
from mlops.core.data import preparation

FACTORS = {"45k": 1, "450k": 10, "4_5m": 100}
STAGES = ("prepare", "train", "monitor", "score")
PARAMS = {"n_estimators": 150, "learning_rate": 0.1, "max_depth": 6}  # scoring cost is trees x depth
WHOLE = "whole-table"  # the validated table as one prepared batch, for the monitor and score stages
ROOT = Path(__file__).resolve().parents[1]


def stage_settings(work: Path, encoding: str = "native") -> config.Settings:
    env = {**os.environ, "MLOPS_PATHS__WORK_DIR": str(work), "MLOPS_DATASET__SOURCE__PATH": str(work / "raw.csv")}
    for key in [k for k in env if k.startswith("MLOPS_STORES__")]:
        del env[key]  # every store under the work dir
    settings = config.load(environ=env)
    training = settings.training.model_copy(update={"families": ["xgboost"], "categorical_encoding": encoding})
    return settings.model_copy(update={"training": training})


# ---- the stages, each run in a child process ---------------------------------------------------------


def prepare(work: Path) -> dict[str, Any]:
    settings = stage_settings(work)
    started = time.perf_counter()
    raw = preparation.load_raw(settings, allow_download=False)
    parts = preparation.split(raw, settings)
    preparation.persist(parts, settings)
    seconds = time.perf_counter() - started
    raw.to_parquet(preparation.batch_path(settings, WHOLE), index=False)  # for the later stages, not timed
    return {"seconds": seconds, "rows": len(raw), "train_rows": len(parts.train)}


def fit(settings: config.Settings) -> tuple[Any, float, dict[str, float]]:
    from mlops.core.data import features
    from mlops.core.training import evaluation, tuning

    frames = preparation.load_splits(settings)
    X = {k: features.normalise(v, settings.dataset) for k, v in frames.items()}
    y = {k: preparation.labels(v, settings) for k, v in frames.items()}
    pipeline = tuning.build("xgboost", PARAMS, settings).fit(X["train"], y["train"])
    threshold = evaluation.choose_threshold(
        y["validation"], pipeline.predict_proba(X["validation"])[:, 1], settings.training.threshold
    )
    test = evaluation.metrics(y["test"], pipeline.predict_proba(X["test"])[:, 1], threshold)
    return pipeline, threshold, test


def train(work: Path) -> dict[str, Any]:
    import mlflow

    from mlops.core.data import schema
    from mlops.core.training import registry

    settings = stage_settings(work)
    started = time.perf_counter()
    pipeline, threshold, test = fit(settings)
    seconds = time.perf_counter() - started
    client = registry.configure(settings)
    with mlflow.start_run(run_name="scale-benchmark"):
        train_frame = preparation.load_split(settings, "train")
        mlflow.log_dict(schema.from_training(train_frame, settings.dataset).to_dict(), schema.ARTIFACT)
        info = registry.log_pipeline(pipeline, train_frame[settings.dataset.features].head(50))
    registry.register(
        client, info.model_uri, settings.training.model_name, {"threshold": threshold}, alias=registry.CHAMPION
    )
    return {"seconds": seconds, "roc_auc": test["roc_auc"], "pr_auc": test["pr_auc"]}


def monitor(work: Path) -> dict[str, Any]:
    from mlops.core.monitoring import drift_metrics

    settings = stage_settings(work)
    started = time.perf_counter()
    result = drift_metrics.monitor(settings, batch=WHOLE)  # reads the batch, as the monitor pipeline does
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": result.rows, "sample_rows": result.sample_rows}


def score(work: Path) -> dict[str, Any]:
    from mlops.core.lifecycle import batch_scoring, champion_scoring
    from mlops.core.serving import frame_scoring

    settings = stage_settings(work)
    model = champion_scoring.champion(settings)
    scorer = model.scorer(settings.dataset)
    started = time.perf_counter()
    path = preparation.batch_path(settings, WHOLE)
    frame = batch_scoring.check(pd.read_parquet(path), settings.dataset, str(path))
    read = time.perf_counter() - started
    started = time.perf_counter()
    proba = frame_scoring.probabilities(scorer, frame, settings.dataset, settings.compute.chunk_rows)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "read_seconds": read, "rows": len(proba), "scorer": scorer.kind}


def quality(work: Path) -> dict[str, Any]:
    """Native categories against one-hot, same parameters and splits."""
    out = {}
    for encoding in ("native", "onehot"):
        _, _, test = fit(stage_settings(work, encoding))
        out[f"roc_auc_{encoding}"], out[f"pr_auc_{encoding}"] = test["roc_auc"], test["pr_auc"]
    return out


def spark_parity(work: Path) -> dict[str, Any]:
    """The table scored on Spark local[2] against the pandas engine, row by row."""
    from mlops.core.data import spark_tables
    from mlops.core.lifecycle import champion_scoring, spark_scoring
    from mlops.core.serving import frame_scoring

    settings = stage_settings(work)
    model = champion_scoring.champion(settings)
    path = preparation.batch_path(settings, WHOLE)
    table = pd.read_parquet(path)
    pandas_proba = frame_scoring.probabilities(model.scorer(settings.dataset), table, settings.dataset)
    started = time.perf_counter()
    spark = spark_tables.session(settings)
    checked = spark_tables.check_features(spark.read.parquet(str(path)), settings.dataset, str(path))
    scored = spark_scoring.score(checked, model, settings.dataset, settings.compute.chunk_rows)
    collected = scored.select(*settings.dataset.features, champion_scoring.PROBABILITY).toPandas()
    seconds = time.perf_counter() - started
    spark.stop()
    # rows matched on their features and probability order-free: sort both by every feature
    mine = table[settings.dataset.features].assign(p=pandas_proba).astype({c: str for c in settings.dataset.features})
    theirs = collected.rename(columns={champion_scoring.PROBABILITY: "p"}).astype(
        {c: str for c in settings.dataset.features}
    )
    key = [*settings.dataset.features, "p"]
    mine, theirs = mine.sort_values(key, kind="stable"), theirs.sort_values(key, kind="stable")
    diff = float(np.max(np.abs(mine["p"].to_numpy() - theirs["p"].to_numpy())))
    return {"max_abs_diff": diff, "rows": len(collected), "seconds": seconds}


def spark_stages(work: Path) -> dict[str, Any]:
    """prepare, train (xgboost.spark at ``PARAMS``) and monitor on Spark ``local[2]``, in a work dir of their own
    beside the pandas one (the same raw file); the session's start is timed apart."""
    from mlops.core.data import spark_preparation, spark_tables
    from mlops.core.monitoring import drift_metrics
    from mlops.core.training import registry, spark_training

    spark_work = work.parent / f"{work.name}-spark"
    spark_work.mkdir(exist_ok=True)
    raw = spark_work / "raw.csv"
    if not raw.exists():
        raw.symlink_to(work / "raw.csv")
    settings = stage_settings(spark_work)
    compute = settings.compute.model_copy(update={"engine": "spark", "spark_master": "local[2]"})
    training = settings.training.model_copy(update={"spark_params": PARAMS})
    settings = settings.model_copy(update={"compute": compute, "training": training})
    out: dict[str, Any] = {}
    started = time.perf_counter()
    spark_tables.session(settings)
    out["session_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    spark_preparation.persist(settings)
    out["prepare_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    result = spark_training.train(settings, reporting.console())
    out["train_seconds"] = time.perf_counter() - started
    run = registry.configure(settings).get_run(result.best.run_id)
    out["train_parity_max_abs_diff"] = run.data.metrics["spark_parity_max_abs_diff"]
    out["train_roc_auc"] = result.best.test["roc_auc"]
    client = registry.configure(settings)
    client.set_registered_model_alias(settings.training.model_name, registry.CHAMPION, result.registered.version)
    batch = preparation.batch_names(settings)[0]
    started = time.perf_counter()
    monitored = drift_metrics.monitor(settings, batch=batch)
    out["monitor_seconds"] = time.perf_counter() - started
    out["monitor_rows"] = monitored.rows
    return out


CHILD_STAGES = {f.__name__: f for f in (prepare, train, monitor, score, quality, spark_parity, spark_stages)}
SPARK_SIZES = ("45k", "450k")  # local[2] is one machine: the Spark path's cost, not a cluster's speed


# ---- the parent: tables, child processes, the result ----------------------------------------------------


def run_child(stage: str, work: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.scale", "--stage", stage, "--work", str(work)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"stage {stage} in {work} exited {process.returncode}")
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_gb"] = usage.ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux
    return result


def main() -> dict[str, Any]:
    console = reporting.console()
    settings = config.load()
    source = preparation.resolve_source(settings, allow_download=False)
    base = settings.work_dir / "bench-scale"
    results: dict[str, Any] = {"params": PARAMS, "categorical_encoding": "native"}
    table = Table(title="scale: seconds and peak RSS per stage (one process each)")
    for col in ("rows", *STAGES):
        table.add_column(col, justify="right")
    for size, factor in FACTORS.items():
        work = base / size
        work.mkdir(parents=True, exist_ok=True)
        keep = (settings.dataset.split.column,) if settings.dataset.split.column else ()
        started = time.perf_counter()
        rows = write_scaled(source, factor, work / "raw.csv", seed=0, keep=keep)
        console.print(f"{size}: {rows:,} rows written in {time.perf_counter() - started:.1f} s")
        results[f"rows_{size}"] = rows
        cells = [f"{rows:,}"]
        for stage in STAGES:
            measured = run_child(stage, work)
            console.print(f"  {stage}: {measured['seconds']:.1f} s, {measured['peak_rss_gb']:.2f} GB")
            results[f"{stage}_seconds_{size}"] = round(measured["seconds"], 2)
            results[f"{stage}_peak_rss_gb_{size}"] = round(measured["peak_rss_gb"], 3)
            for extra in ("roc_auc", "pr_auc", "read_seconds", "sample_rows", "scorer"):
                if extra in measured:
                    value = measured[extra]
                    results[f"{stage}_{extra}_{size}"] = round(value, 4) if isinstance(value, float) else value
            cells.append(f"{measured['seconds']:.1f} s / {measured['peak_rss_gb']:.2f} GB")
        table.add_row(*cells)
        if factor == 1:
            for key, value in run_child("quality", work).items():
                if key.startswith(("roc_auc", "pr_auc")):
                    results[f"quality_{key}_45k"] = round(value, 4)
            parity = run_child("spark_parity", work)
            results["spark_parity_max_abs_diff"] = parity["max_abs_diff"]
            results["spark_parity_rows"] = parity["rows"]
            results["spark_local2_score_seconds_45k"] = round(parity["seconds"], 2)
        if size in SPARK_SIZES:
            on_spark = run_child("spark_stages", work)
            console.print(f"  on spark local[2]: {on_spark}")
            for key, value in on_spark.items():
                results[f"spark_{key}_{size}"] = round(value, 4) if isinstance(value, float) else value
    for stage in STAGES:
        results[f"growth_{stage}"] = round(results[f"{stage}_seconds_4_5m"] / results[f"{stage}_seconds_450k"] / 10, 3)
    console.print(table)
    console.print({k: v for k, v in results.items() if k.startswith(("growth", "quality", "spark"))})
    write_result("scale", results)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale")
    parser.add_argument("--stage", choices=sorted(CHILD_STAGES))
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(CHILD_STAGES[args.stage](args.work)))
    else:
        main()
