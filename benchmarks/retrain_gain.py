"""What the monitor -> alert -> retrain loop gains on the next season, measured on the real pipeline code.

In a throwaway work dir (SQLite stores): prepare; train on dec-may and deploy (the stale champion);
monitor summer and fall (timed: the monitor pipeline's seconds per batch); evaluate the provisioned
alert; handle Grafana's firing webhook (retrain on the reference plus the labeled summer batch, deploy on
the common holdout). Then score fall (sep-nov, seen by neither model) with the stale champion and with
the retrained model. Search budgets are the configured ones unless overridden by MLOPS_TRAINING__* env.

Writes ``benchmarks/results/retrain_gain.json``. Set ``MLOPS_DATASET__SOURCE__PATH`` to the CSV.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import write_result
from mlops.core import config
from mlops.core.data import preparation
from mlops.core.lifecycle import promotion, retrain
from mlops.core.monitoring import alerting, drift_metrics
from mlops.core.training import tuning

WEBHOOK = Path(__file__).resolve().parents[2] / "shared" / "grafana" / "webhook-firing.json"


def isolated_settings(folder: Path) -> config.Settings:
    env = {
        **os.environ,
        "MLOPS_PATHS__WORK_DIR": str(folder),
        "MLOPS_STORES__TRACKING_URI": f"sqlite:///{folder}/mlflow.db",
        "MLOPS_STORES__ARTIFACT_LOCATION": str(folder / "mlartifacts"),
        "MLOPS_STORES__MONITORING_DB": f"sqlite:///{folder}/monitoring.db",
        "MLOPS_MONITORING__REPORTS_DIR": str(folder / "reports"),
    }
    return config.load(environ=env)


def firing_body(settings: config.Settings) -> dict[str, Any]:
    if WEBHOOK.is_file():
        return json.loads(WEBHOOK.read_text())
    alert = {"status": "firing", "labels": {"alertname": settings.monitoring.alert_name}}
    return {"status": "firing", "alerts": [{**alert, "startsAt": "now", "fingerprint": "benchmark"}]}


def main() -> dict[str, Any]:
    console = Console()
    with tempfile.TemporaryDirectory(prefix="retrain_gain-") as tmp:
        settings = isolated_settings(Path(tmp))
        preparation.persist(preparation.split(preparation.load_raw(settings, allow_download=False), settings), settings)
        started = time.perf_counter()
        stale = tuning.train(settings, preparation.load_splits(settings), console).registered.version
        promotion.promote_if_better(settings)
        train_seconds = time.perf_counter() - started

        monitored = {name: drift_metrics.monitor(settings, batch=name) for name in ("summer", "fall")}
        alert = alerting.evaluate(settings)

        started = time.perf_counter()
        received = retrain.receive(settings, firing_body(settings))
        retrained = retrain.retrain(settings, received.to_dict())
        decision = promotion.promote_if_better(settings, retrained.holdout)
        retrain_seconds = time.perf_counter() - started

        fall = preparation.load_batch(settings, "fall")
        assert retrained.version is not None
        scores = {
            name: promotion.evaluate_version(settings, v, fall)
            for name, v in (("stale", stale), ("new", retrained.version))
        }
    result = {
        "stale_version": stale,
        "retrained_version": retrained.version,
        "retrained_on": ["train", *(f"batch:{b} (fit part)" for b in retrained.batches)],
        "stale_roc_auc": round(scores["stale"]["roc_auc"], 4),
        "stale_pr_auc": round(scores["stale"]["pr_auc"], 4),
        "retrained_roc_auc": round(scores["new"]["roc_auc"], 4),
        "retrained_pr_auc": round(scores["new"]["pr_auc"], 4),
        "fall_rows": len(fall),
        "deploy_decision": decision.action,
        "deploy_reason": decision.reason,
        "alert": alerting.describe(alert),
        "monitor": {
            name: {
                "seconds": round(r.seconds, 2),
                "rows": r.rows,
                "drifted_share": round(r.drifted_share, 4),
                "prediction_drift": round(r.prediction_drift, 4),
                "stale_roc_auc": round(r.roc_auc, 4) if r.roc_auc is not None else None,
            }
            for name, r in monitored.items()
        },
        "monitor_seconds_per_batch": round(sum(r.seconds for r in monitored.values()) / len(monitored), 2),
        "train_seconds": round(train_seconds, 1),
        "retrain_seconds": round(retrain_seconds, 1),
        "search": settings.training.search.model_dump(),
        "families": list(settings.training.families),
    }
    table = Table(title="fall (sep-nov): stale dec-may champion vs retrained with the labeled summer batch")
    for col in ("model", "version", "ROC-AUC", "PR-AUC"):
        table.add_column(col)
    table.add_row("stale", stale, f"{result['stale_roc_auc']:.4f}", f"{result['stale_pr_auc']:.4f}")
    table.add_row(
        "retrained", str(retrained.version), f"{result['retrained_roc_auc']:.4f}", f"{result['retrained_pr_auc']:.4f}"
    )
    console.print(table)
    console.print(
        f"monitor: {result['monitor_seconds_per_batch']} s per batch; alert {alert.state} "
        f"(A={alert.values.get('A')}); deploy: {decision.action}"
    )
    write_result("retrain_gain", result)
    return result


if __name__ == "__main__":
    main()
