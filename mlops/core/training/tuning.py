"""Training: several model families, each tuned with Optuna under a time budget, logged to MLflow.

Every candidate is one sklearn Pipeline (preprocessing + model) logged as a child run of one training
run, with parameters, validation and test metrics, plots and the model itself. Candidates are ranked on
the validation split by ``training.selection_metric``; the best is registered with alias ``challenger``
and the top three runs carry the tag ``challenger_rank``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
from mlflow.tracking import MlflowClient
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import Pipeline

from mlops.core import families, reporting
from mlops.core.config import Settings
from mlops.core.data import features, schema
from mlops.core.data.preparation import labels
from mlops.core.training import evaluation, registry

optuna.logging.set_verbosity(optuna.logging.WARNING)


def estimator(family: str, params: dict[str, Any], settings: Settings) -> Any:
    spec = families.get(family)
    made = spec.make(params, settings.training.seed, settings.training.n_jobs)
    if settings.training.categorical_encoding == "native":
        assert spec.native_categorical is not None  # the configuration refuses a family without it
        dataset = settings.dataset
        made = spec.native_categorical(made, [False] * len(dataset.numerical) + [True] * len(dataset.categorical))
    return made


def build(family: str, params: dict[str, Any], settings: Settings) -> Pipeline:
    """One unfitted Pipeline: the family's preprocessing followed by its estimator."""
    encoding = settings.training.categorical_encoding
    return Pipeline(
        [
            ("preprocess", features.preprocessor(settings.dataset, family, encoding)),
            ("model", estimator(family, params, settings)),
        ]
    )


def suggest(trial: optuna.Trial, family: str) -> dict[str, Any]:
    """The family's search space (mlops.core.families)."""
    return families.get(family).search_space(trial)


def score(metric: str, y: np.ndarray, proba: np.ndarray) -> float:
    return float(roc_auc_score(y, proba) if metric == "roc_auc" else average_precision_score(y, proba))


@dataclass
class Search:
    params: dict[str, Any]
    trials: int
    seconds: float
    best_value: float


def tune(
    family: str,
    X_train: pd.DataFrame,
    y_train: np.ndarray,
    X_val: pd.DataFrame,
    y_val: np.ndarray,
    settings: Settings,
) -> Search:
    """Optuna TPE search on the validation metric, stopped by ``max_trials`` or the time budget."""
    metric = settings.training.selection_metric

    def objective(trial: optuna.Trial) -> float:
        pipeline = build(family, suggest(trial, family), settings).fit(X_train, y_train)
        return score(metric, y_val, pipeline.predict_proba(X_val)[:, 1])

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=settings.training.seed))
    started = time.perf_counter()
    study.optimize(
        objective, n_trials=settings.training.search.max_trials, timeout=settings.training.search.time_budget_seconds
    )
    return Search(dict(study.best_params), len(study.trials), time.perf_counter() - started, float(study.best_value))


def importance(pipeline: Pipeline) -> dict[str, float]:
    """Per-feature importance of the fitted model (absolute coefficients for linear models)."""
    names = features.output_feature_names(pipeline)
    model = pipeline[-1]
    if hasattr(model, "feature_importances_"):
        values = np.asarray(model.feature_importances_, dtype=float)
    elif hasattr(model, "coef_"):
        values = np.abs(np.asarray(model.coef_, dtype=float)).ravel()
    else:  # HistGradientBoosting exposes none: no importance rather than a made-up one
        return {}
    return {name: float(v) for name, v in zip(names, values, strict=True)}


@dataclass
class Candidate:
    family: str
    params: dict[str, Any]
    pipeline: Pipeline
    threshold: float
    validation: dict[str, float]
    test: dict[str, float]
    run_id: str
    model_uri: str
    search: Search


@dataclass
class TrainingResult:
    run_id: str
    candidates: list[Candidate]
    registered: registry.RegisteredModel
    selection_metric: str
    leaderboard: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    @property
    def best(self) -> Candidate:
        return self.candidates[0]


def _leaderboard(candidates: list[Candidate], lift_key: str) -> pd.DataFrame:
    rows = []
    for rank, c in enumerate(candidates, start=1):
        rows.append(
            {
                "rank": rank,
                "model": c.family,
                "roc_auc": round(c.validation["roc_auc"], 4),
                "pr_auc": round(c.validation["pr_auc"], 4),
                "lift": round(c.validation[lift_key], 3),
                "f1": round(c.validation["f1"], 4),
                "threshold": round(c.threshold, 4),
                "trials": c.search.trials,
                "chosen": rank == 1,
                "run_id": c.run_id,
            }
        )
    return pd.DataFrame(rows)


def train_candidate(family: str, frames: dict[str, pd.DataFrame], settings: Settings) -> Candidate:
    """Tune, refit, evaluate and log one family as a child run of the active run."""
    dataset = settings.dataset
    X = {k: features.normalise(v, dataset) for k, v in frames.items()}
    y = {k: labels(v, settings) for k, v in frames.items()}
    with mlflow.start_run(run_name=family, nested=True) as run:
        search = tune(family, X["train"], y["train"], X["validation"], y["validation"], settings)
        pipeline = build(family, search.params, settings).fit(X["train"], y["train"])
        proba_val = pipeline.predict_proba(X["validation"])[:, 1]
        threshold = evaluation.choose_threshold(y["validation"], proba_val, settings.training.threshold)
        lift = settings.training.lift_fraction
        validation = evaluation.metrics(y["validation"], proba_val, threshold, lift)
        test = evaluation.metrics(y["test"], pipeline.predict_proba(X["test"])[:, 1], threshold, lift)
        info = log_candidate(
            family,
            {**search.params, "search_trials": search.trials, "search_seconds": round(search.seconds, 2)},
            pipeline,
            (validation, test),
            (y["validation"], proba_val),
            schema.from_training(frames["train"], dataset),
            X["validation"].head(50),
            settings,
        )
    return Candidate(
        family, search.params, pipeline, threshold, validation, test, run.info.run_id, info.model_uri, search
    )


def log_candidate(
    family: str,
    params: dict[str, Any],
    pipeline: Pipeline,
    scores: tuple[dict[str, float], dict[str, float]],
    validation_scores: tuple[np.ndarray, np.ndarray],
    feature_schema: schema.FeatureSchema,
    example: pd.DataFrame,
    settings: Settings,
) -> mlflow.models.model.ModelInfo:
    """Log one fitted candidate to the active (child) run: its parameters, validation and test metrics, plots,
    importance, feature schema and the pipeline itself (every engine's candidates are logged alike)."""
    validation, test = scores
    mlflow.set_tags({"family": family, "dataset": settings.dataset.name, "stage": "candidate"})
    mlflow.log_params({"family": family, **params})
    mlflow.log_metrics({f"validation_{k}": v for k, v in validation.items()})
    mlflow.log_metrics({f"test_{k}": v for k, v in test.items()})
    imp = importance(pipeline)
    for path, fig in evaluation.figures(*validation_scores, imp, family).items():
        mlflow.log_figure(fig, path)
    mlflow.log_dict(imp, "feature_importance.json")
    mlflow.log_dict(feature_schema.to_dict(), schema.ARTIFACT)
    return registry.log_pipeline(pipeline, example)


def train(settings: Settings, frames: dict[str, pd.DataFrame], console: Console | None = None) -> TrainingResult:
    """Train every configured family, rank them, register the best with alias ``challenger``."""
    console = console or reporting.console()
    client = registry.configure(settings)
    cfg = settings.training
    candidates: list[Candidate] = []
    started = datetime.now(UTC)
    with mlflow.start_run(run_name=f"train-{started:%Y%m%d-%H%M%S}") as parent:
        mlflow.set_tags({"dataset": settings.dataset.name, "stage": "training"})
        mlflow.log_params(
            {
                "families": ",".join(cfg.families),
                "selection_metric": cfg.selection_metric,
                "time_budget_seconds": cfg.search.time_budget_seconds,
                "max_trials": cfg.search.max_trials,
                "features": ",".join(settings.dataset.features),
                "train_rows": len(frames["train"]),
            }
        )
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("training model families", total=len(cfg.families))
            for family in cfg.families:
                progress.update(task, description=f"tuning {family}")
                candidates.append(train_candidate(family, frames, settings))
                progress.advance(task)
            progress.update(task, description="trained model families")
        registered, board = register_best(client, candidates, settings, parent.info.run_id, started)
    return TrainingResult(parent.info.run_id, candidates, registered, cfg.selection_metric, board)


def register_best(
    client: MlflowClient, candidates: list[Candidate], settings: Settings, training_run_id: str, started: datetime
) -> tuple[registry.RegisteredModel, pd.DataFrame]:
    """Rank the candidates (best first, in place), tag the top three, log the leaderboard to the active run and
    register the best with alias ``challenger``; every engine's training ends here."""
    cfg = settings.training
    lift_key = evaluation.lift_key(cfg.lift_fraction)
    candidates.sort(key=lambda c: c.validation[cfg.selection_metric], reverse=True)
    for rank, c in enumerate(candidates[:3], start=1):
        client.set_tag(c.run_id, "challenger_rank", str(rank))
    board = _leaderboard(candidates, lift_key)
    mlflow.log_text(board.to_csv(index=False), "leaderboard.csv")
    best = candidates[0]
    mlflow.log_metrics({f"best_validation_{k}": v for k, v in best.validation.items()})
    tags = {
        "family": best.family,
        "threshold": best.threshold,
        "dataset": settings.dataset.name,
        "training_run_id": training_run_id,
        "candidate_run_id": best.run_id,
        "trained_at": started.isoformat(timespec="seconds"),
        "features": json.dumps(settings.dataset.features),
        **{f"validation_{k}": round(v, 6) for k, v in best.validation.items()},
        **{f"test_{k}": round(v, 6) for k, v in best.test.items()},
    }
    registered = registry.register(client, best.model_uri, cfg.model_name, tags, alias=registry.CHALLENGER)
    return registered, board
