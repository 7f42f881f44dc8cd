"""The predictor against ``mlflow models serve`` on the same model, side by side in one run.

A small XGBoost pipeline (the platform's preprocessing + model) is fitted on the reference months and
saved as an MLflow model directory in a temporary folder; our predictor (gunicorn, 2 workers, the
prediction log on, to a SQLite file) serves it from a payload, ``mlflow models serve --env-manager local``
(2 workers) from the same directory. Then, for each:

- single-record latency: sequential requests; client round trip p50/p99 and, for ours, the server's own
  time from the ``Server-Timing`` header (Flask before_request to after_request: validation, scoring,
  queueing the log, serialising);
- throughput: 8 concurrent clients (4 threads in each of 2 processes, one HTTP connection each) for a fixed
  time;
- one 100k-row JSON batch (rows drawn from the dataset, missing values included), median of 3, in MLflow's
  ``dataframe_split`` form, which both servers take (the same bytes to both);
- parity: max |served - pipeline.predict_proba| over the batch.

The clients are HTTP/1.1 on plain sockets (kept open where the server allows it): the client shares the 2
cores with the servers, and ``requests`` or ``http.client`` alone would cost more CPU per call than our
predictor does. Both servers get the same client.

Writes ``benchmarks/results/serving.json``. Needs no running service; takes a few minutes.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import pandas as pd
import sqlalchemy as sa
from mlflow.models import infer_signature
from rich.console import Console
from rich.table import Table

from benchmarks import write_result
from benchmarks.load_generator import (
    CLIENTS,
    SINGLE_REQUESTS,
    THROUGHPUT_SECONDS,
    Endpoint,
    single_latency,
    throughput,
)
from mlops.core import config, services
from mlops.core.data import features, preparation, schema
from mlops.core.monitoring import store
from mlops.core.serving import predictor_server, scoring
from mlops.core.serving.model_card import MODEL_JSON, ModelCard
from mlops.core.training import registry, tuning

BATCH_ROWS = 100_000
BATCH_REPEATS = 3
XGB_PARAMS = {"n_estimators": 300, "learning_rate": 0.05, "max_depth": 5, "subsample": 0.8, "colsample_bytree": 0.8}
TARGETS = {"p50_server_ms": 2.0, "throughput_ratio_vs_mlflow": 9.0, "batch_ratio_vs_mlflow": 4.0}


def logged_rows(database: Path) -> int:
    if not database.exists():
        return 0
    engine = store.engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(store.predictions)).scalar_one())
    except sa.exc.OperationalError:  # the table is created with the first write
        return 0
    finally:
        engine.dispose()


def settle(log_database: Path | None, timeout: float = 120) -> None:
    """Wait until the predictor's prediction log stops growing, so every phase starts alike (the log is
    written off the request path; this keeps one phase's writing out of the next one's timing)."""
    if log_database is None:
        return
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        count = logged_rows(log_database)
        if count == last:
            return
        last = count
        time.sleep(2)


def batch(
    endpoint: Endpoint, records: list[dict[str, Any]], log_database: Path | None
) -> tuple[dict[str, Any], np.ndarray]:
    body = endpoint.body(records)
    connection = endpoint.connect()
    seconds: list[float] = []
    probabilities = np.empty(0)
    for _ in range(BATCH_REPEATS):
        settle(log_database)
        started = time.perf_counter()
        answer, _ = connection.post(endpoint.path(), body)
        probabilities = endpoint.probabilities(answer)
        seconds.append(time.perf_counter() - started)
    return {
        "rows": len(records),
        "body_mb": round(len(body) / 1e6, 1),
        "seconds": statistics.median(seconds),
        "all_seconds": [round(s, 3) for s in seconds],
    }, probabilities


def prepare_model(settings: config.Settings, folder: Path) -> tuple[Any, pd.DataFrame, Path]:
    raw = preparation.load_raw(settings, allow_download=False)
    split = settings.dataset.split
    reference = raw[raw[split.column].isin(split.reference)] if split.strategy == "column" else raw
    X = features.normalise(reference, settings.dataset)
    pipeline = tuning.build("xgboost", XGB_PARAMS, settings).fit(X, preparation.labels(reference, settings))
    model_dir = folder / "payload" / "model-1"
    mlflow.sklearn.save_model(
        pipeline,
        str(model_dir),
        signature=infer_signature(X.head(50), pipeline.predict_proba(X.head(50))),
        input_example=X.head(5),
        pyfunc_predict_fn="predict_proba",
        skops_trusted_types=registry.SKOPS_TRUSTED_TYPES,
        pip_requirements=registry.model_requirements(),
    )
    card = ModelCard(
        name="bench-model",
        version="1",
        alias="champion",
        threshold=0.5,
        family="xgboost",
        model_dir="model-1",
        feature_schema=schema.from_training(reference, settings.dataset).to_dict(),
    )
    (folder / "payload" / MODEL_JSON).write_text(card.to_json())
    return pipeline, raw, model_dir


def main() -> dict[str, Any]:
    console = Console()
    settings = config.load()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        folder = Path(tmp)
        console.print("fitting the benchmark model (XGBoost on the reference months)")
        pipeline, raw, model_dir = prepare_model(settings, folder)
        names = settings.dataset.features
        rng = np.random.default_rng(0)
        pool = scoring.frame_records(raw, names)
        records = [pool[i] for i in rng.integers(0, len(pool), BATCH_ROWS)]
        expected = pipeline.predict_proba(features.frame_from_records(records, settings.dataset))[:, 1]

        ours_port, mlflow_port = services.free_port(), services.free_port()
        ours = predictor_server.predictor_process(
            settings,
            port=ours_port,
            payload_dir=folder / "payload",
            log_path=folder / "predictor.log",
            env={
                "MLOPS_STORES__MONITORING_DB": f"sqlite:///{folder / 'monitoring.db'}",
                "MLOPS_SERVING__SPOOL_DIR": str(folder / "spool"),
                "MLOPS_SERVING__WORKERS": "2",
            },
        )
        theirs = services.ManagedProcess(
            "mlflow-serve",
            [
                str(services.VENV_BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                str(model_dir),
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(mlflow_port),
                "-w",
                "2",
            ],
            folder / "mlflow-serve.log",
        )
        endpoints = [
            Endpoint("predictor", f"http://127.0.0.1:{ours_port}", names),
            Endpoint("mlflow", f"http://127.0.0.1:{mlflow_port}", names),
        ]
        results: dict[str, dict[str, Any]] = {}
        try:
            console.print("starting both servers")
            ours.start()
            theirs.start()
            services.wait_http(endpoints[0].url + "/ready", ours, timeout=300)
            services.wait_http(endpoints[1].url + "/ping", theirs, timeout=300)
            for endpoint in endpoints:
                log_database = folder / "monitoring.db" if endpoint.name == "predictor" else None
                singles = [endpoint.body([r]) for r in records[: SINGLE_REQUESTS + 30]]
                console.print(f"{endpoint.name}: single-record latency")
                single = single_latency(endpoint, singles)
                settle(log_database)
                console.print(f"{endpoint.name}: throughput with {CLIENTS} clients")
                load = throughput(endpoint, singles)
                console.print(f"{endpoint.name}: {BATCH_ROWS:,}-row batch")
                timed, served = batch(endpoint, records, log_database)
                results[endpoint.name] = {
                    "single": single,
                    "throughput": load,
                    "batch": timed,
                    "max_abs_diff": float(np.max(np.abs(served - expected))),
                }
                if log_database is not None:  # every record scored while measuring is in the prediction log
                    settle(log_database)
                    scored = 30 + single["requests"] + load["requests"] + BATCH_REPEATS * BATCH_ROWS
                    results[endpoint.name] |= {
                        "records_scored": scored,
                        "predictions_logged": logged_rows(log_database),
                    }
        finally:
            ours.stop()
            theirs.stop()

    ours_r, theirs_r = results["predictor"], results["mlflow"]
    summary = {
        "model": {"family": "xgboost", "params": XGB_PARAMS, "fitted_on": "the reference months"},
        "setup": {
            "workers_each": 2,
            "clients": CLIENTS,
            "single_requests": SINGLE_REQUESTS,
            "throughput_seconds": THROUGHPUT_SECONDS,
            "batch_rows": BATCH_ROWS,
            "prediction_log": "on (SQLite) for the predictor; mlflow logs nothing",
        },
        "predictor": ours_r,
        "mlflow": theirs_r,
        "throughput_ratio_vs_mlflow": ours_r["throughput"]["requests_per_second"]
        / theirs_r["throughput"]["requests_per_second"],
        "batch_ratio_vs_mlflow": theirs_r["batch"]["seconds"] / ours_r["batch"]["seconds"],
        "max_abs_diff": ours_r["max_abs_diff"],
        "mlflow_max_abs_diff": theirs_r["max_abs_diff"],
        "targets": TARGETS,
    }
    summary["targets_met"] = {
        "p50_server_ms": ours_r["single"]["server_p50_ms"] < TARGETS["p50_server_ms"],
        "throughput_ratio_vs_mlflow": summary["throughput_ratio_vs_mlflow"] >= TARGETS["throughput_ratio_vs_mlflow"],
        "batch_ratio_vs_mlflow": summary["batch_ratio_vs_mlflow"] >= TARGETS["batch_ratio_vs_mlflow"],
        "parity_1e-6": summary["max_abs_diff"] <= 1e-6,
    }
    path = write_result("serving", summary)
    print_table(console, summary)
    console.print(f"wrote {path}")
    return summary


def print_table(console: Console, summary: dict[str, Any]) -> None:
    ours, theirs = summary["predictor"], summary["mlflow"]
    table = Table(title="predictor vs mlflow models serve (same model, same machine, one run)")
    table.add_column("measure")
    table.add_column("predictor", justify="right")
    table.add_column("mlflow serve", justify="right")
    table.add_column("ratio", justify="right")
    rows = [
        ("single p50, client (ms)", ours["single"]["client_p50_ms"], theirs["single"]["client_p50_ms"]),
        ("single p99, client (ms)", ours["single"]["client_p99_ms"], theirs["single"]["client_p99_ms"]),
        ("single p50, server (ms)", ours["single"]["server_p50_ms"], None),
        ("single p99, server (ms)", ours["single"]["server_p99_ms"], None),
        (
            f"throughput, {CLIENTS} clients (req/s)",
            ours["throughput"]["requests_per_second"],
            theirs["throughput"]["requests_per_second"],
        ),
        (f"{BATCH_ROWS:,}-row batch (s)", ours["batch"]["seconds"], theirs["batch"]["seconds"]),
        ("max |diff| vs in-process", ours["max_abs_diff"], theirs["max_abs_diff"]),
    ]
    for label, a, b in rows:
        ratio = ""
        if b is not None and a:
            higher_is_better = "req/s" in label
            ratio = f"{(a / b) if higher_is_better else (b / a):.1f}x" if "diff" not in label else ""
        table.add_row(label, f"{a:.3g}", "n/a" if b is None else f"{b:.3g}", ratio)
    console.print(table)
    met = summary["targets_met"]
    console.print("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in met.items()))
