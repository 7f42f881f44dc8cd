"""In-process scoring cost of one record, per model family: what the predictor's scorer pays.

The serving benchmark measures the whole server on an XGBoost model; the champion can be any of the four
families, and their single-record cost differs by two orders of magnitude. Each family is fitted on the
reference months with the parameters below (the training search's middle ground), wrapped by
``scoring.scorer_for`` as the predictor does (one thread), and timed on 500 single records (after 100
warm-up calls), next to the fitted pipeline's own ``predict_proba`` on the same records.

Writes ``benchmarks/results/scoring_families.json``; takes about a minute.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from rich.table import Table
from threadpoolctl import threadpool_limits

from benchmarks import write_result
from mlops.core import config, reporting
from mlops.core.data import features, preparation
from mlops.core.serving import scoring
from mlops.core.training import tuning

PARAMS: dict[str, dict[str, Any]] = {
    "logistic_regression": {"C": 1.0},
    "random_forest": {"n_estimators": 200, "max_depth": 10},
    "xgboost": {"n_estimators": 300, "learning_rate": 0.05, "max_depth": 5},
    "hist_gradient_boosting": {"max_iter": 200, "learning_rate": 0.05},
}
WARM_UP, TIMED = 100, 500


def per_record_ms(predict: Any, records: list[dict[str, Any]]) -> list[float]:
    for record in records[:WARM_UP]:
        predict([record])
    out = []
    for record in records[WARM_UP : WARM_UP + TIMED]:
        started = time.perf_counter()
        predict([record])
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> dict[str, Any]:
    console = reporting.console()
    settings = config.load()
    raw = preparation.load_raw(settings, allow_download=False)
    split = settings.dataset.split
    reference = raw[raw[split.column].isin(split.reference)] if split.strategy == "column" else raw
    X, y = features.normalise(reference, settings.dataset), preparation.labels(reference, settings)
    records = scoring.frame_records(raw.sample(WARM_UP + TIMED, random_state=0), settings.dataset.features)
    threadpool_limits(limits=1)  # as each predictor worker runs
    results: dict[str, Any] = {}
    for family, params in PARAMS.items():
        console.print(f"{family}: fitting and timing")
        pipeline = tuning.build(family, params, settings).fit(X, y)
        estimator = pipeline[-1]
        if "n_jobs" in estimator.get_params():
            estimator.set_params(n_jobs=1)
        scorer = scoring.scorer_for(pipeline, settings.dataset, records[:256])
        ours = per_record_ms(scorer.predict, records)

        def pipeline_predict(batch: list[dict[str, Any]], pipeline: Any = pipeline) -> Any:
            return pipeline.predict_proba(features.frame_from_records(batch, settings.dataset))[:, 1]

        theirs = per_record_ms(pipeline_predict, records)
        results[family] = {
            "params": params,
            "scorer": scorer.kind,
            "compiled_trees": getattr(scorer, "trees", None) is not None,
            "scorer_p50_ms": float(np.percentile(ours, 50)),
            "scorer_p99_ms": float(np.percentile(ours, 99)),
            "pipeline_p50_ms": float(np.percentile(theirs, 50)),
        }
    path = write_result("scoring_families", {"records_timed": TIMED, "families": results})
    table = Table(title="one record, in process (one thread)")
    for column in ("family", "scorer", "p50 ms", "p99 ms", "pipeline p50 ms"):
        table.add_column(column, justify="left" if column in ("family", "scorer") else "right")
    for family, r in results.items():
        kind = r["scorer"] + (" + trees" if r["compiled_trees"] else "")
        row = (r["scorer_p50_ms"], r["scorer_p99_ms"], r["pipeline_p50_ms"])
        table.add_row(family, kind, *(f"{v:.3f}" for v in row))
    console.print(table)
    console.print(f"wrote {path}")
    return results
