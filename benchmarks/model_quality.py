"""Model quality of the chosen configuration, honestly measured (no ``duration``).

1. Choose as the train pipeline does: tune every configured family on the reference's train split under
   the configured time budget, pick the best by validation ROC-AUC.
2. 5-fold stratified cross-validation of that choice on all 45,211 rows.
3. The seasonal protocol: fit on all of dec-may, score jun-aug (summer) and sep-nov (fall).

Writes ``benchmarks/results/model_quality.json``. Set ``MLOPS_DATASET__SOURCE__PATH`` to the CSV.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn.model_selection import StratifiedKFold

from benchmarks import write_result
from mlops.core import config
from mlops.core.data import features, preparation
from mlops.core.training import evaluation, tuning

FOLDS = 5


def fit_score(
    settings: config.Settings, family: str, params: dict[str, Any], train: pd.DataFrame, scored: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    pipeline = tuning.build(family, params, settings)
    pipeline.fit(features.normalise(train, settings.dataset), preparation.labels(train, settings))
    proba = pipeline.predict_proba(features.normalise(scored, settings.dataset))[:, 1]
    return preparation.labels(scored, settings), proba


def main() -> dict[str, Any]:
    console = Console()
    settings = config.load()
    raw = preparation.load_raw(settings, allow_download=False)
    parts = preparation.split(raw, settings)
    X = {n: features.normalise(getattr(parts, n), settings.dataset) for n in ("train", "validation")}
    y = {n: preparation.labels(getattr(parts, n), settings) for n in ("train", "validation")}

    started = time.perf_counter()
    searches = {}
    for family in settings.training.families:
        console.print(f"tuning {family} (budget {settings.training.search.time_budget_seconds:.0f} s)")
        searches[family] = tuning.tune(family, X["train"], y["train"], X["validation"], y["validation"], settings)
    chosen = max(searches, key=lambda f: searches[f].best_value)
    params = searches[chosen].params
    console.print(f"chosen: {chosen} {params}")

    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=settings.training.seed)
    labels_all = preparation.labels(raw, settings)
    cv: list[dict[str, float]] = []
    for k, (train_idx, test_idx) in enumerate(folds.split(raw, labels_all), start=1):
        y_true, proba = fit_score(settings, chosen, params, raw.iloc[train_idx], raw.iloc[test_idx])
        cv.append(evaluation.metrics(y_true, proba, 0.5, settings.training.lift_fraction))
        console.print(f"fold {k}/{FOLDS}: ROC-AUC {cv[-1]['roc_auc']:.4f}, PR-AUC {cv[-1]['pr_auc']:.4f}")

    reference = pd.concat([parts.train, parts.validation, parts.test])
    seasonal = {}
    for name, batch in parts.batches.items():
        y_true, proba = fit_score(settings, chosen, params, reference, batch)
        m = evaluation.metrics(y_true, proba, 0.5, settings.training.lift_fraction)
        seasonal[name] = {
            "rows": len(batch),
            "roc_auc": round(m["roc_auc"], 4),
            "pr_auc": round(m["pr_auc"], 4),
            "lift_at_10": round(m["lift_at_10"], 3),
        }

    lift_key = evaluation.lift_key(settings.training.lift_fraction)
    result = {
        "dataset": settings.dataset.name,
        "rows": len(raw),
        "features": settings.dataset.features,
        "excluded": sorted(settings.dataset.excluded),
        "chosen_family": chosen,
        "chosen_params": params,
        "validation_scores": {f: round(s.best_value, 4) for f, s in searches.items()},
        "cv_folds": FOLDS,
        "cv_roc_auc": round(float(np.mean([m["roc_auc"] for m in cv])), 4),
        "cv_roc_auc_std": round(float(np.std([m["roc_auc"] for m in cv])), 4),
        "cv_pr_auc": round(float(np.mean([m["pr_auc"] for m in cv])), 4),
        "cv_pr_auc_std": round(float(np.std([m["pr_auc"] for m in cv])), 4),
        "cv_lift_at_10": round(float(np.mean([m[lift_key] for m in cv])), 3),
        "seasonal": {"train": "reference (" + ", ".join(settings.dataset.split.reference) + ")", **seasonal},
        "search_budget_seconds_per_family": settings.training.search.time_budget_seconds,
        "seconds": round(time.perf_counter() - started, 1),
    }
    table = Table(title=f"model quality: {chosen}, {FOLDS}-fold CV on {len(raw):,} rows, no duration")
    for col in ("protocol", "ROC-AUC", "PR-AUC"):
        table.add_column(col)
    table.add_row(
        "5-fold CV (all rows)",
        f"{result['cv_roc_auc']:.4f} ± {result['cv_roc_auc_std']:.4f}",
        f"{result['cv_pr_auc']:.4f} ± {result['cv_pr_auc_std']:.4f}",
    )
    for name, m in seasonal.items():
        table.add_row(f"dec-may -> {name}", f"{m['roc_auc']:.4f}", f"{m['pr_auc']:.4f}")
    console.print(table)
    path = write_result("model_quality", result)
    console.print(f"wrote {path}")
    return result
