"""Soak: the reliability drills of ``tests/reliability`` at larger sizes (``make soak``), measured.

In a throwaway folder: a PostgreSQL of its own (the monitoring database, stopped on purpose), an XGBoost
model fitted on 8,000 rows in deploy's payload layout, and the predictor under gunicorn (2 workers).

1. fuzz: >= 1,000 schemathesis cases from the predictor's ``/openapi.json`` (valid and invalid data);
   ``fuzz_5xx`` must be 0.
2. load: 8 clients x 250 single-record requests on loopback; ``requests_sent`` must equal
   ``predictions_logged`` (rows in ``store.predictions``); latency percentiles under that load.
3. drills: PostgreSQL stopped for 5 s under load (the predictor keeps answering, rows spool, then flush;
   none lost); a gunicorn worker SIGKILLed under load (answered = logged, none lost or duplicated); MLflow
   unreachable (the predictor keeps serving and reloads from its payload; deploy fails with an error naming
   the server); a truncated batch file and a half-failing monitoring write (clear error, no partial rows).
4. attacks (``benchmarks/soak_attacks.py``, issue #25): 1,000 slow connections of each kind (the share of
   normal requests answered within 1 s); the gunicorn master of a supervised predictor SIGKILLed (seconds to
   recover, answers lost); Mage's whole route table without a login (state-changing routes open: 0); a reload
   storm and a full spool disk (``mlops.testing.fault_drills``); no log holding any secret the run used. The
   retrain-killed and retrain-trigger drills need the trained model: they run in ``tests/reliability`` only.

Writes ``benchmarks/results/reliability.json``. Set ``MLOPS_DATASET__SOURCE__PATH`` to the CSV.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from benchmarks import soak_attacks, write_result
from mlops.core import config, services
from mlops.core.data import features, preparation
from mlops.core.lifecycle import promotion
from mlops.core.monitoring import drift_metrics, monitored_inputs, store
from mlops.core.serving import prediction_log, predictor_server
from mlops.core.training import tuning
from mlops.testing import supervision_drill
from mlops.testing.drills import (
    ThrowawayPostgres,
    fuzz,
    load,
    logged_rows,
    wait_for_rows,
    worker_kill,
)
from mlops.testing.payloads import write_local_payload

FUZZ_CASES = 1000
THREADS, PER_THREAD = 8, 250


def records_of(frame: pd.DataFrame, settings: config.Settings, rows: int = 2000) -> list[dict[str, Any]]:
    sample = frame[settings.dataset.features].sample(rows, random_state=11)
    return [
        {k: None if pd.isna(v) else v.item() if hasattr(v, "item") else v for k, v in r.items()}
        for r in sample.to_dict("records")
    ]


def postgres_outage(
    predictor: str, database: str, spool: Path, pg: ThrowawayPostgres, records: list[dict[str, Any]]
) -> dict[str, Any]:
    before = logged_rows(database)
    spooled: list[int] = []

    def outage() -> None:
        time.sleep(1.0)
        pg.stop()
        time.sleep(5.0)
        spooled.append(len(prediction_log.spooled_files(spool)))
        pg.start()

    result = load(predictor, records, threads=THREADS, per_thread=150, batch_every=0, during=outage)
    wait_for_rows(database, before + result.records_sent, timeout=120)
    logged = logged_rows(database, result.request_ids)  # the rows of exactly these requests
    return {
        "requests_sent": result.requests_sent,
        "answered_200": result.statuses[200],
        "spool_files_while_down": spooled[0] if spooled else 0,
        "predictions_logged_after_recovery": logged,
        "spool_files_left": len(prediction_log.spooled_files(spool)),
        "lost": result.records_sent - logged,
        "latency_ms": result.percentiles(),
    }


def mlflow_down(predictor: str, settings: config.Settings, records: list[dict[str, Any]], token: str) -> dict[str, Any]:
    import requests

    served = requests.get(f"{predictor}/model", timeout=10).json()["version"]
    reloaded = requests.post(f"{predictor}/reload", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    time.sleep(2)
    services.wait_http(f"{predictor}/ready", timeout=60)
    predicted = requests.post(f"{predictor}/predict", json=records[:5], timeout=30)
    dead = f"http://127.0.0.1:{services.free_port()}"
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "1"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "5"
    offline = settings.model_copy(update={"stores": settings.stores.model_copy(update={"tracking_uri": dead})})
    started = time.monotonic()
    try:
        promotion.promote_if_better(offline)
        error = "deploy did not fail"
    except Exception as exc:  # whatever MLflow raises: the message is the outcome
        error = f"{exc.__class__.__name__}: {str(exc)[:300]}"
    return {
        "predictor_reloaded": reloaded.status_code == 202,
        "predict_status_after_reload": predicted.status_code,
        "served_version_unchanged": requests.get(f"{predictor}/model", timeout=10).json()["version"] == served,
        "deploy_error": error,
        "deploy_failed_in_seconds": round(time.monotonic() - started, 1),
    }


def monitoring_drills(settings: config.Settings, frame: pd.DataFrame) -> dict[str, Any]:
    store.migrate(settings.monitoring_db)
    batches = preparation.batches_dir(settings)
    batches.mkdir(parents=True, exist_ok=True)
    whole = batches / "whole.parquet"
    frame.head(2000).to_parquet(whole, index=False)
    (batches / "truncated.parquet").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])

    def counts() -> tuple[int, int]:
        eng = store.engine(settings.monitoring_db)
        try:
            with eng.connect() as conn:
                return tuple(  # type: ignore[return-value]
                    int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                    for t in (store.monitor_runs, store.column_drift)
                )
        finally:
            eng.dispose()

    before = counts()
    try:
        drift_metrics.monitor(settings, batch="truncated")
        truncated = "monitor accepted a truncated file"
    except monitored_inputs.MonitorInputError as exc:
        truncated = str(exc)[:200]
    refused = drift_metrics.ColumnDrift(None, "K-S p_value", 0.2, 0.05, False)  # type: ignore[arg-type]
    result = drift_metrics.MonitorResult(
        "half-written", "m", "1", 10, 10, 0, 0.0, False, 0.01, "wasserstein", 0.0, [refused], "file:///nowhere.html"
    )
    try:
        drift_metrics.write(settings, result, datetime.now(UTC))
        half = "the write succeeded"
    except sa.exc.IntegrityError:
        half = "refused by the database, rolled back"
    return {
        "truncated_batch_error": truncated,
        "half_failed_write": half,
        "partial_rows_written": [a - b for a, b in zip(counts(), before, strict=True)],
    }


def main() -> dict[str, Any]:
    console = Console()
    folder = Path(tempfile.mkdtemp(prefix="mlops-soak-"))
    folder.chmod(0o755)  # the throwaway PostgreSQL runs as the postgres user
    pg = ThrowawayPostgres(folder / "pg").start()
    token = secrets.token_hex(16)
    env = {
        **os.environ,
        "MLOPS_PATHS__WORK_DIR": str(folder / "work"),
        "MLOPS_STORES__MONITORING_DB": pg.database("soak"),
        "MLOPS_MONITORING__REPORTS_DIR": str(folder / "reports"),
        "MLOPS_SECRETS__RELOAD_TOKEN": token,
    }
    settings = config.load(environ=env)
    frame = preparation.load_raw(settings, allow_download=False)
    sample = frame.sample(8000, random_state=7).reset_index(drop=True)
    pipeline = tuning.build("xgboost", {"n_estimators": 60, "max_depth": 4}, settings)
    pipeline.fit(features.normalise(sample, settings.dataset), preparation.labels(sample, settings))
    payload = write_local_payload(folder / "payload", pipeline, "1", sample, settings, "xgboost")
    port = services.free_port()
    spool = folder / "spool"
    proc = predictor_server.predictor_process(
        settings,
        port=port,
        payload_dir=payload,
        log_path=folder / "predictor.log",
        env={k: v for k, v in env.items() if k.startswith("MLOPS_")} | {"MLOPS_SERVING__SPOOL_DIR": str(spool)},
    ).start()
    url = f"http://127.0.0.1:{port}"
    records = records_of(frame, settings)
    try:
        services.wait_http(f"{url}/ready", proc, timeout=240)
        started = time.perf_counter()
        fuzzed = fuzz(url, FUZZ_CASES)
        fuzz_seconds = time.perf_counter() - started

        fuzz_logged = wait_for_rows(settings.monitoring_db, sum(fuzzed.scored.values()), timeout=60)
        before = logged_rows(settings.monitoring_db)
        loaded = load(url, records, threads=THREADS, per_thread=PER_THREAD, batch_every=0)
        wait_for_rows(settings.monitoring_db, before + loaded.records_sent, timeout=120)
        logged = logged_rows(settings.monitoring_db, loaded.request_ids)  # rows of the load's requests only

        drills = {
            "postgres_stopped_under_load": postgres_outage(url, settings.monitoring_db, spool, pg, records),
            "mlflow_down": mlflow_down(url, settings, records, token),
            "monitoring_batch": monitoring_drills(settings, frame),
            "worker_kill": worker_kill(url, proc.pid, settings.monitoring_db, records, threads=THREADS, per_thread=100),
            "slow_clients": soak_attacks.slow_clients(url, records[0]),
        }
        supervised_env = {k: v for k, v in env.items() if k.startswith("MLOPS_")}
        supervised_env["MLOPS_SERVING__SPOOL_DIR"] = str(folder / "supervised-spool")
        drills["master_kill"] = soak_attacks.master_kill(folder, settings, supervised_env, payload, records)
        drills["reload_storm"] = soak_attacks.reload_storm(url, token, proc.pid, records)
        drills["spool_full"] = soak_attacks.spool_full(folder, settings, supervised_env, payload, pg, records)
        drills["mage_routes"], mage_secrets = soak_attacks.mage_route_check(folder, pg)
    finally:
        proc.stop()
        pg.stop()
    # the reload token was sent (mlflow_down reloads the predictor), the retrain token and the owner's password
    # were given to Mage: no log of the run may hold any of them
    used = {"MLOPS_SECRETS__RELOAD_TOKEN": token, **mage_secrets}
    drills["secrets_in_logs"] = {"secrets_used": len(used), **supervision_drill.secrets_in_logs(folder, used)}

    result = {
        **fuzzed.summary(),
        "fuzz_seconds": round(fuzz_seconds, 1),
        "fuzz_records_logged": fuzz_logged,
        "fuzz_5xx_examples": fuzzed.server_errors[:5],
        "requests_sent": loaded.requests_sent,
        "predictions_logged": logged,
        "load": {"threads": THREADS, "requests_per_thread": PER_THREAD, **loaded.summary()},
        "latency_ms": loaded.percentiles(),
        "drills": drills,
    }
    table = Table(title="reliability soak (predictor under gunicorn, 2 workers, loopback)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    outage, worker = drills["postgres_stopped_under_load"], drills["worker_kill"]
    slow, master, routes = drills["slow_clients"], drills["master_kill"], drills["mage_routes"]
    for label, value in (
        ("fuzz cases / 5xx", f"{fuzzed.cases:,} / {len(fuzzed.server_errors)}"),
        ("requests sent / predictions logged", f"{loaded.requests_sent:,} / {logged:,}"),
        ("latency p50 / p90 / p99 ms", " / ".join(str(loaded.percentiles()[k]) for k in ("p50", "p90", "p99"))),
        ("requests per second", str(loaded.summary()["requests_per_second"])),
        ("PG outage: answered 200 / sent", f"{outage['answered_200']:,} / {outage['requests_sent']:,}"),
        ("PG outage: lost rows", str(outage["lost"])),
        ("MLflow down: predictor serves", str(drills["mlflow_down"]["predict_status_after_reload"] == 200)),
        ("monitoring: partial rows", str(drills["monitoring_batch"]["partial_rows_written"])),
        (
            "worker killed: answered / logged / lost / duplicated",
            f"{worker['answered']} / {worker['logged']} / {worker['lost']} / {worker['duplicated']}",
        ),
        ("1,000 slow clients per kind: worst share in 1 s / p99 ms", f"{slow['answered_share']} / {slow['p99_ms']}"),
        ("gunicorn master killed: recovered s / lost", f"{master['recovered_seconds']} / {master['lost']}"),
        (
            "reload storm: throughput share / lost",
            f"{drills['reload_storm']['throughput_share']} / {drills['reload_storm']['lost']}",
        ),
        (
            "spool disk full: answered / logged / lost / refused / recovered",
            "{answered} / {logged} / {lost} / {refused} / {recovered_without_restart}".format(**drills["spool_full"]),
        ),
        ("Mage routes checked / open state-changing", f"{routes['routes_checked']} / {routes['open_state_changing']}"),
        ("secrets in logs", str(drills["secrets_in_logs"]["occurrences"])),
    ):
        table.add_row(label, value)
    console.print(table)
    write_result("reliability", result)
    if os.environ.get("SOAK_KEEP") != "1":  # SOAK_KEEP=1 keeps the folder (predictor log, spool) to inspect
        shutil.rmtree(folder, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
