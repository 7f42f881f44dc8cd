"""Monitoring: Evidently drift and quality metrics of one batch, written to the monitoring database.

A batch is either a prepared monitoring batch (``data.load_batch``, labeled) or a time window of the
prediction log (``store.predictions``, the live traffic, unlabeled). Both are compared with the reference
(the validation and test splits, rows the champion never saw: :mod:`mlops.core.monitoring.drift_reference`) by
Evidently 0.7's current API:

- drift of every feature column (Evidently's per-column method, score, threshold and verdict), and the
  number and share of drifted columns (dataset drift when the share reaches ``DATASET_DRIFT_SHARE``);
- prediction drift: the champion scores the batch and the reference, and its probability is compared as
  one more column with a pinned distance (``PREDICTION_DRIFT_METHOD``), so a larger value means more drift
  and the Grafana alert can compare it with the threshold the run records (the configured one, raised to the
  noise a same-population sample of the batch's size shows: ``drift_reference.prediction_threshold``);
- the share of missing feature cells;
- where labels are known, the champion's ROC-AUC, PR-AUC and F1 (at its own threshold) on the batch.

One ``monitor_runs`` row and its ``column_drift`` rows are written in one transaction, keyed by batch,
window and model version; Evidently's HTML report is kept as a file and linked in ``report_uri``. A batch
that breaks the schema fails with :class:`MonitorInputError` before anything is written.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import DatasetMissingValueCount, ValueDrift
from evidently.presets import DataDriftPreset
from rich.table import Table

from mlops.core.config import Settings
from mlops.core.data import preparation
from mlops.core.monitoring import drift_reference, store
from mlops.core.monitoring.batch_measures import BatchMeasures, missing_share, quality
from mlops.core.monitoring.drift_reference import PREDICTION
from mlops.core.monitoring.monitored_inputs import (
    MonitorInputError,
    check_frame,
    logged_predictions,
    parse_window,
    read_batch,
)
from mlops.core.training import registry

# A distance (not a p-value), so "above the threshold" means drift, as the alert rule reads it.
PREDICTION_DRIFT_METHOD = "wasserstein"
DATASET_DRIFT_SHARE = 0.5  # Evidently's default: dataset drift when half the columns drift
WINDOW_BATCH = "predictions"  # the batch name of a prediction-log window


EMPTY_METHOD = "all missing"  # a column with no value in the batch (or the reference): judged without Evidently


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass
class MonitorResult:
    batch: str
    model_name: str
    model_version: str
    rows: int  # every row of the batch (counts, missing share and quality are over all of them)
    sample_rows: int  # the rows Evidently compared (monitoring.drift_sample_rows)
    drifted_columns: int
    drifted_share: float
    dataset_drift: bool
    prediction_drift: float
    prediction_drift_method: str
    missing_share: float
    columns: list[ColumnDrift]
    report_uri: str
    window_start: datetime | None = None
    window_end: datetime | None = None
    roc_auc: float | None = None
    pr_auc: float | None = None
    f1: float | None = None
    seconds: float = 0.0
    run_id: int | None = None
    prediction_threshold: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready, without the keys whose value is unknown: Mage cannot read back a block output holding
        ``None`` (a window of the log has no labels, so no ROC-AUC), it fails on ``builtins.NoneType``."""
        out = asdict(self)
        out.pop("columns")
        out["drifted"] = [c.column for c in self.columns if c.drifted]
        for key in ("window_start", "window_end"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return {key: value for key, value in out.items() if value is not None}


# ---- metrics ---------------------------------------------------------------------------------------


def _test_statuses(snapshot: dict[str, Any]) -> dict[str, bool]:
    """Evidently's own drift verdict per column (its ValueDrift test fails when the column drifts)."""
    verdicts = {}
    for test in snapshot.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith("ValueDrift"):
            verdicts[params["column"]] = test["status"] == "FAIL"
    return verdicts


def drift_report(
    reference: pd.DataFrame, current: pd.DataFrame, settings: Settings, prediction_threshold: float
) -> tuple[Any, list[ColumnDrift], ColumnDrift]:
    """Run the Evidently report; return (snapshot, feature drift, prediction drift)."""
    dataset = settings.dataset
    # one dtype on both sides (a batch read compactly holds categoricals; the reference, objects)
    compact = [c for c in dataset.categorical if isinstance(current[c].dtype, pd.CategoricalDtype)]
    current = current.astype({c: object for c in compact})
    # Evidently refuses a column with no value at all; such a column is judged here: drifted when the
    # reference had values (everything went missing), not when it was empty there too.
    empty = [c for c in dataset.features if current[c].isna().all() or reference[c].isna().all()]
    compared = [c for c in dataset.features if c not in empty]
    definition = DataDefinition(
        numerical_columns=[*dataset.numerical, PREDICTION], categorical_columns=list(dataset.categorical)
    )
    metrics = [
        DataDriftPreset(columns=compared, drift_share=DATASET_DRIFT_SHARE),
        ValueDrift(
            column=PREDICTION,
            method=PREDICTION_DRIFT_METHOD,
            threshold=prediction_threshold,
        ),
        DatasetMissingValueCount(columns=dataset.features),  # of the sample, in the HTML report
    ]
    snapshot = Report(metrics, include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    result = snapshot.dict()
    verdicts = _test_statuses(result)
    columns = [
        ColumnDrift(column, EMPTY_METHOD, 1.0, 0.0, True)
        if reference[column].notna().any()
        else ColumnDrift(column, EMPTY_METHOD, 0.0, 0.0, False)
        for column in empty
    ]
    prediction: ColumnDrift | None = None
    for metric in result["metrics"]:
        cfg, value = metric["config"], metric["value"]
        kind = cfg["type"].rsplit(":", 1)[-1]
        if kind == "ValueDrift":
            drift = ColumnDrift(
                column=cfg["column"],
                method=cfg["method"],
                score=float(value),
                threshold=float(cfg["threshold"]),
                drifted=verdicts[cfg["column"]],
            )
            if drift.column == PREDICTION:
                prediction = drift
            elif drift.column not in empty:  # judged above
                columns.append(drift)
    assert prediction is not None, "Evidently returned no prediction drift"
    return snapshot, columns, prediction


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "batch"


def report_path(settings: Settings, batch: str, version: str, when: datetime) -> Path:
    folder = settings.drift_reports_dir
    return folder / f"{_slug(batch)}-v{version}-{when:%Y%m%dT%H%M%S%f}.html"


# ---- the run ---------------------------------------------------------------------------------------


def champion(settings: Settings) -> registry.AliasedModel:
    found = registry.load_aliased(settings)
    if found is None:
        name = settings.training.model_name
        raise MonitorInputError(f"model {name!r} has no champion: run the deploy pipeline before monitoring")
    return found


def monitor(
    settings: Settings,
    batch: str | None = None,
    window: tuple[datetime, datetime] | None = None,
    frame: pd.DataFrame | None = None,
) -> MonitorResult:
    """Monitor one batch: a prepared batch by name, a window of the prediction log, or a given frame."""
    started = time.perf_counter()
    if (batch is None) == (window is None):
        raise MonitorInputError("monitor: give either a batch name or a time window of the prediction log")
    name = batch if batch is not None else WINDOW_BATCH
    if window is None and frame is None and settings.compute.engine == "spark":
        from mlops.core.monitoring import spark_monitoring  # pyspark is the spark extra's

        model = champion(settings)
        measured = spark_monitoring.measure_batch(settings, name, model.pipeline, model.threshold)
        reference = spark_monitoring.unseen_reference(settings, model.pipeline)
    else:
        if frame is None:
            frame = read_batch(settings, name) if window is None else logged_predictions(settings, *window)
        source = f"batch {name!r}" if window is None else f"prediction log window {window[0]:%Y-%m-%d %H:%M}"
        current = check_frame(frame, settings, source)
        y = preparation.labels(frame, settings) if settings.dataset.target in frame.columns else None
        del frame  # a large batch is held once from here on, as the model's input columns
        model = champion(settings)
        reference = drift_reference.unseen_reference(settings, model.pipeline)
        current[PREDICTION] = drift_reference.probabilities(model.pipeline, current)
        scores: dict[str, float | None] = {"roc_auc": None, "pr_auc": None, "f1": None}
        if y is not None:
            scores = quality(y, current[PREDICTION].to_numpy(), model.threshold)
        # Evidently on a seeded sample (a large batch costs it time and memory per row); counts and quality exact
        sample = drift_reference.drift_sample(
            current, settings.monitoring.drift_sample_rows, settings.dataset.split.seed
        )
        measured = BatchMeasures(len(current), missing_share(current, settings.dataset), scores, sample)
        del current
    sample = measured.sample
    threshold, _ = drift_reference.prediction_threshold(settings, reference[PREDICTION].to_numpy(), len(sample))
    snapshot, columns, prediction = drift_report(reference, sample, settings, threshold)
    drifted = sum(c.drifted for c in columns)
    share = drifted / len(columns)
    scores = measured.scores
    computed = datetime.now(UTC)
    path = report_path(settings, name, model.version, computed)
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    result = MonitorResult(
        batch=name,
        model_name=model.name,
        model_version=model.version,
        rows=measured.rows,
        drifted_columns=drifted,
        drifted_share=share,
        dataset_drift=share >= DATASET_DRIFT_SHARE,
        prediction_drift=prediction.score,
        prediction_drift_method=prediction.method,
        missing_share=measured.missing_share,
        sample_rows=len(sample),
        columns=[*columns, prediction],
        report_uri=path.as_uri(),
        window_start=window[0] if window else None,
        window_end=window[1] if window else None,
        prediction_threshold=prediction.threshold,
        roc_auc=scores["roc_auc"],
        pr_auc=scores["pr_auc"],
        f1=scores["f1"],
    )
    try:
        result.run_id = write(settings, result, computed)
    except Exception:
        path.unlink(missing_ok=True)  # no report without its row
        raise
    result.seconds = time.perf_counter() - started
    return result


def write(settings: Settings, result: MonitorResult, computed_at: datetime) -> int:
    """Insert the monitor run and its column rows in one transaction; return the run's id."""
    url = settings.monitoring_db
    with store.transaction(url) as conn:
        run_id = conn.execute(
            store.monitor_runs.insert()
            .values(
                computed_at=computed_at,
                batch=result.batch,
                window_start=result.window_start,
                window_end=result.window_end,
                model_name=result.model_name,
                model_version=result.model_version,
                rows=result.rows,
                sample_rows=result.sample_rows,
                drifted_columns=result.drifted_columns,
                drifted_share=result.drifted_share,
                dataset_drift=result.dataset_drift,
                prediction_drift=result.prediction_drift,
                prediction_drift_method=result.prediction_drift_method,
                missing_share=result.missing_share,
                roc_auc=result.roc_auc,
                pr_auc=result.pr_auc,
                f1=result.f1,
                report_uri=result.report_uri,
            )
            .returning(store.monitor_runs.c.id)
        ).scalar_one()
        conn.execute(
            store.column_drift.insert(),
            [
                {
                    "monitor_run_id": run_id,
                    "column_name": c.column,
                    "method": c.method,
                    "score": c.score,
                    "threshold": c.threshold,
                    "drifted": c.drifted,
                }
                for c in result.columns
            ],
        )
    return int(run_id)


def runs(settings: Settings, limit: int = 20) -> list[dict[str, Any]]:
    """The latest monitor runs, newest first."""
    url = settings.monitoring_db
    table = store.monitor_runs
    with store.connection(url) as conn:
        rows = conn.execute(sa.select(table).order_by(table.c.id.desc()).limit(limit))
        return [dict(row._mapping) for row in rows]


def monitor_from_variables(settings: Settings, variables: dict[str, Any]) -> MonitorResult:
    """The monitor pipeline's entry point: runtime variable ``batch``, or ``window_start`` + ``window_end``."""
    if variables.get("window_start") or variables.get("window_end"):
        window = parse_window(variables.get("window_start") or "", variables.get("window_end") or "")
        return monitor(settings, window=window)
    batch = variables.get("batch")
    if not batch:
        raise MonitorInputError("monitor: set the runtime variable `batch` (e.g. summer) or window_start/window_end")
    return monitor(settings, batch=str(batch))


def summary_table(rows: list[dict[str, Any]], title: str = "monitoring (against the reference)") -> Table:
    """One line per monitor run: drift, prediction drift, missing share, the champion's quality."""
    table = Table(title=title)
    for col in ("batch", "model", "rows", "drifted columns", "prediction drift", "missing", "ROC-AUC", "PR-AUC", "F1"):
        table.add_column(col, justify="left" if col == "batch" else "right", no_wrap=True)

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    for r in rows:
        table.add_row(
            str(r["batch"]),
            f"v{r['model_version']}",
            f"{r['rows']:,}",
            f"{r['drifted_columns']} ({r['drifted_share']:.0%})",
            f"{r['prediction_drift']:.3f}",
            num(r.get("missing_share"), ".1%"),
            num(r.get("roc_auc"), ".4f"),
            num(r.get("pr_auc"), ".4f"),
            num(r.get("f1"), ".4f"),
        )
    return table
