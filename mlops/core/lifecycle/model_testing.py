"""The test pipeline: score held-out data through the RUNNING predictor over HTTP and record the metrics.

It measures what is served, not what is registered: the held-out ``test`` split and every labeled batch
the champion never learnt from (after a retrain, a batch's held-out part instead of the batch) are sent to
``POST /predict`` at ``settings.serving.url``; ROC-AUC, PR-AUC, F1 (at the served threshold) and lift come
from :mod:`mlops.core.training.evaluation`. Results go to MLflow (a run tagged with the model name
and version, its metrics also linked to the version's logged model, and version tags pointing at the run)
and to ``store.evaluations``.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from rich.table import Table

from mlops.core.config import Settings
from mlops.core.data.preparation import batch_path, labels, load_split, stored_batches
from mlops.core.monitoring import store
from mlops.core.serving.predictor_client import PredictorClient
from mlops.core.training import evaluation, registry

SOURCE = "test_pipeline"
CHUNK_ROWS = 5_000  # rows per request: far below the predictor's limits, few round trips


@dataclass(frozen=True)
class Evaluation:
    dataset: str  # "test" or a batch name
    model_name: str
    model_version: str
    rows: int
    roc_auc: float
    pr_auc: float
    f1: float
    lift: float
    threshold: float


@dataclass(frozen=True)
class Served:
    probabilities: np.ndarray
    model_name: str
    model_version: str
    threshold: float


def labeled_parts(settings: Settings, trained_on: Collection[str] = ()) -> dict[str, pd.DataFrame]:
    """The held-out test split and every prepared batch, by name, except the batches the model was fitted on
    (``trained_on``: a retrained model learnt from part of them; their ``<name>.holdout`` is what it never saw)."""
    parts = {"test": load_split(settings, "test")}
    for name in stored_batches(settings):
        if name not in trained_on:
            parts[name] = pd.read_parquet(batch_path(settings, name))
    return parts


def trained_on(settings: Settings) -> set[str]:
    """The batches the served champion learnt from (its ``training_batches`` tag, set by retrain)."""
    client = registry.configure(settings)
    champion = registry.version_by_alias(client, settings.training.model_name, registry.CHAMPION)
    tag = (champion.tags or {}).get("training_batches", "") if champion is not None else ""
    return {name for name in tag.split(",") if name}


def score_over_http(settings: Settings, frame: pd.DataFrame, chunk_rows: int = CHUNK_ROWS) -> Served:
    """Probabilities of every row from ``POST /predict`` (JSON records; missing values as null).

    Raises :class:`~mlops.core.serving.predictor_client.PredictorUnavailable` when nothing answers or no model is
    deployed, and refuses results from a predictor that switched models halfway.
    """
    client = PredictorClient(settings.serving.url, timeout=120)
    records = json.loads(frame[settings.dataset.features].to_json(orient="records"))
    probabilities: list[float] = []
    answers: set[tuple[str, str, float]] = set()
    for start in range(0, len(records), chunk_rows):
        answer = client.predict(records[start : start + chunk_rows])
        probabilities.extend(p.probability for p in answer.predictions)
        answers.add((answer.model_name, answer.model_version, answer.threshold))
    if len(answers) != 1:
        raise RuntimeError(f"the predictor switched models while being tested: {sorted(answers)}")
    (name, version, threshold) = answers.pop()
    return Served(np.asarray(probabilities), name, version, threshold)


def evaluate_served(settings: Settings) -> list[Evaluation]:
    """Score every labeled part through the predictor and compute its metrics."""
    results = []
    lift_fraction = settings.training.lift_fraction
    for name, frame in labeled_parts(settings, trained_on(settings)).items():
        served = score_over_http(settings, frame)
        values = evaluation.metrics(labels(frame, settings), served.probabilities, served.threshold, lift_fraction)
        results.append(
            Evaluation(
                dataset=name,
                model_name=served.model_name,
                model_version=served.model_version,
                rows=len(frame),
                roc_auc=values["roc_auc"],
                pr_auc=values["pr_auc"],
                f1=values["f1"],
                lift=values[evaluation.lift_key(lift_fraction)],
                threshold=served.threshold,
            )
        )
    if len({(r.model_name, r.model_version) for r in results}) != 1:
        raise RuntimeError("the predictor switched models between parts of the test")
    return results


def metric_dict(results: list[Evaluation], lift_fraction: float) -> dict[str, float]:
    """MLflow metric names: ``<part>_roc_auc``, ``<part>_pr_auc``, ``<part>_f1``, ``<part>_lift_at_10``."""
    lift = evaluation.lift_key(lift_fraction)
    out: dict[str, float] = {}
    for r in results:
        out.update(
            {
                f"{r.dataset}_roc_auc": r.roc_auc,
                f"{r.dataset}_pr_auc": r.pr_auc,
                f"{r.dataset}_f1": r.f1,
                f"{r.dataset}_{lift}": r.lift,
                f"{r.dataset}_rows": float(r.rows),
            }
        )
    return out


def record(settings: Settings, results: list[Evaluation]) -> str:
    """Write the results to MLflow (run + model version tags) and to ``store.evaluations``; return the run id."""
    if not results:
        raise ValueError("no evaluations to record")
    client = registry.configure(settings)
    name, version = results[0].model_name, results[0].model_version
    model_version = client.get_model_version(name, version)
    metrics = metric_dict(results, settings.training.lift_fraction)
    started = datetime.now(UTC)
    with mlflow.start_run(run_name=f"test-{name}-v{version}") as run:
        mlflow.set_tags(
            {
                "stage": "test",
                "model_name": name,
                "model_version": version,
                "predictor_url": settings.serving.url,
                "dataset": settings.dataset.name,
            }
        )
        mlflow.log_param("threshold", results[0].threshold)
        mlflow.log_metrics(metrics)
        if model_version.model_id:  # also shown on the logged model's page
            mlflow.log_metrics(metrics, model_id=model_version.model_id)
        mlflow.log_dict({"evaluations": [asdict(r) for r in results]}, "evaluations.json")
    client.set_model_version_tag(name, version, "test_run_id", run.info.run_id)
    client.set_model_version_tag(name, version, "tested_at", started.isoformat(timespec="seconds"))

    with store.transaction(settings.monitoring_db) as conn:
        conn.execute(
            store.evaluations.insert(),
            [{**_row(r), "evaluated_at": started, "source": SOURCE} for r in results],
        )
    return str(run.info.run_id)


def _row(result: Evaluation) -> dict[str, Any]:
    row = asdict(result)
    # NaN (a part with one class only) is stored as NULL, not as a number
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}


def evaluations_frame(results: list[Evaluation]) -> pd.DataFrame:
    return pd.DataFrame([asdict(r) for r in results])


def from_frame(frame: pd.DataFrame) -> list[Evaluation]:
    """Back from :func:`evaluations_frame` (how the Mage blocks hand results to each other)."""
    return [
        Evaluation(
            **{
                **{str(k): v for k, v in row.items()},
                "model_version": str(row["model_version"]),
                "rows": int(row["rows"]),
            }
        )
        for row in frame.to_dict("records")
    ]


def evaluations_table(results: list[Evaluation]) -> Table:
    first = results[0]
    table = Table(title=f"served model {first.model_name} v{first.model_version}, scored over HTTP")
    for col in ("data", "rows", "ROC-AUC", "PR-AUC", "F1", "lift", "threshold"):
        table.add_column(col, justify="left" if col == "data" else "right")
    for r in results:
        table.add_row(
            r.dataset,
            f"{r.rows:,}",
            f"{r.roc_auc:.4f}",
            f"{r.pr_auc:.4f}",
            f"{r.f1:.4f}",
            f"{r.lift:.2f}",
            f"{r.threshold:.3f}",
        )
    return table
