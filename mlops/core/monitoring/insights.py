"""Read-only views of the platform's state for the app: the monitoring database and the MLflow registry.

Every function here only reads. When a store cannot be reached, it raises :class:`ServiceUnavailable`
naming the store and its address, so a page can say which one is down instead of showing a traceback.
"""

from __future__ import annotations

import functools
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import mlflow
import pandas as pd
import requests
import sqlalchemy as sa
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sklearn.pipeline import Pipeline

from mlops.core.config import Settings
from mlops.core.data import schema
from mlops.core.monitoring import store
from mlops.core.training import registry

MLFLOW = "MLflow"
DATABASE = "monitoring database"
PLOTS = {"roc": "plots/roc.png", "pr": "plots/pr.png", "calibration": "plots/calibration.png"}
IMPORTANCE_ARTIFACT = "feature_importance.json"


class ServiceUnavailable(RuntimeError):
    """A store the app reads from cannot be reached; ``service`` names it, the message says where and why."""

    def __init__(self, service: str, where: str, detail: str) -> None:
        super().__init__(f"the {service} at {where} is unavailable: {detail}")
        self.service = service
        self.where = where
        self.detail = detail


def hide_password(url: str) -> str:
    """The database URL fit to show: its password masked."""
    try:
        return sa.make_url(store.normalise_url(url)).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


# ---------------------------------------------------------------------------------------------------------
# Monitoring database


@functools.lru_cache(maxsize=8)
def _engine(url: str) -> sa.Engine:
    return store.engine(url)


def _query(url: str, statement: sa.Executable) -> pd.DataFrame:
    try:
        with _engine(url).connect() as conn:
            result = conn.execute(statement)
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    except sa.exc.OperationalError as exc:
        if "no such table" in str(exc):  # SQLite without the schema yet
            raise ServiceUnavailable(DATABASE, hide_password(url), "its tables do not exist yet") from exc
        raise ServiceUnavailable(DATABASE, hide_password(url), str(exc.orig).strip().splitlines()[0]) from exc
    except sa.exc.ProgrammingError as exc:  # PostgreSQL without the schema yet
        raise ServiceUnavailable(DATABASE, hide_password(url), "its tables do not exist yet") from exc


def table_counts(url: str) -> dict[str, int]:
    """Rows in each monitoring table: a quick picture of what the platform has recorded."""
    tables = (store.predictions, store.monitor_runs, store.alerts, store.model_events)
    selects = [
        sa.select(sa.literal(t.name).label("name"), sa.func.count().label("rows")).select_from(t) for t in tables
    ]
    counts = _query(url, sa.union_all(*selects))
    return {str(name): int(rows) for name, rows in zip(counts["name"], counts["rows"], strict=True)}


def drift_history(url: str) -> pd.DataFrame:
    """Every monitor run, oldest first: drift share, prediction drift, missing share, labeled metrics."""
    t = store.monitor_runs
    return _query(url, sa.select(t).order_by(t.c.computed_at, t.c.id))


def column_drift(url: str, monitor_run_id: int) -> pd.DataFrame:
    """Per-column drift of one monitor run, most drifted (lowest p-value / highest distance) first."""
    t = store.column_drift
    frame = _query(
        url,
        sa.select(t.c.column_name, t.c.method, t.c.score, t.c.threshold, t.c.drifted)
        .where(t.c.monitor_run_id == monitor_run_id)
        .order_by(t.c.drifted.desc(), t.c.column_name),
    )
    return frame


Bucket = Literal["hour", "day"]


def _truncate(column: sa.ColumnElement[Any], unit: Bucket, dialect: str) -> sa.ColumnElement[Any]:
    if dialect == "postgresql":
        return sa.func.date_trunc(unit, column)
    fmt = "%Y-%m-%d %H:00:00" if unit == "hour" else "%Y-%m-%d 00:00:00"
    return sa.func.strftime(fmt, column)


def prediction_volume(url: str, unit: Bucket = "hour") -> pd.DataFrame:
    """Scored records per ``unit`` and model version: columns ``period``, ``model_version``, ``predictions``."""
    t = store.predictions
    period = _truncate(t.c.scored_at, unit, _engine(url).dialect.name).label("period")
    frame = _query(
        url,
        sa.select(period, t.c.model_version, sa.func.count().label("predictions"))
        .group_by(period, t.c.model_version)
        .order_by(period),
    )
    if not frame.empty:
        frame["period"] = pd.to_datetime(frame["period"], utc=True)
    return frame


def recent_scores(url: str, limit: int = 20_000) -> pd.DataFrame:
    """The latest ``limit`` scored records: ``scored_at``, ``model_version``, ``probability``, ``decision``."""
    t = store.predictions
    return _query(
        url,
        sa.select(t.c.scored_at, t.c.model_version, t.c.probability, t.c.decision)
        .order_by(t.c.scored_at.desc(), t.c.id.desc())
        .limit(limit),
    )


def alert_history(url: str, limit: int = 200) -> pd.DataFrame:
    """Alerts received (Grafana webhook) and what was done about them, newest first."""
    t = store.alerts
    return _query(
        url,
        sa.select(t.c.received_at, t.c.alertname, t.c.status, t.c.action, t.c.outcome, t.c.fingerprint)
        .order_by(t.c.received_at.desc(), t.c.id.desc())
        .limit(limit),
    )


def model_history(url: str, limit: int = 200) -> pd.DataFrame:
    """Registrations, promotions, rejections and rollbacks, newest first."""
    t = store.model_events
    return _query(
        url,
        sa.select(
            t.c.occurred_at,
            t.c.model_name,
            t.c.version,
            t.c.action,
            t.c.alias,
            t.c.previous_version,
            t.c.metric,
            t.c.candidate_value,
            t.c.champion_value,
            t.c.reason,
        )
        .order_by(t.c.occurred_at.desc(), t.c.id.desc())
        .limit(limit),
    )


# ---------------------------------------------------------------------------------------------------------
# MLflow registry


def mlflow_client(settings: Settings, timeout: float = 3.0) -> MlflowClient:
    """A client of the configured tracking server, after checking that it answers (fast, no retries)."""
    uri = settings.tracking_uri
    if not registry.is_local_store(uri):
        try:
            response = requests.get(f"{uri.rstrip('/')}/health", timeout=timeout)
        except requests.RequestException as exc:
            raise ServiceUnavailable(MLFLOW, uri, f"no answer ({exc.__class__.__name__})") from exc
        if response.status_code != 200:
            raise ServiceUnavailable(MLFLOW, uri, f"/health answered HTTP {response.status_code}")
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _mlflow_failure(settings: Settings, exc: Exception) -> Exception:
    """Down (the server stopped answering) or a genuine error of the request (e.g. a missing artifact)?"""
    try:
        mlflow_client(settings)
    except ServiceUnavailable as down:
        return down
    return LookupError(f"MLflow at {settings.tracking_uri}: {str(exc).splitlines()[0]}")


@dataclass(frozen=True)
class VersionSummary:
    """One registered model version as the Models page lists it."""

    name: str
    version: str
    aliases: list[str]
    created: pd.Timestamp
    family: str | None
    trained_at: str | None
    threshold: float | None
    candidate_run_id: str | None
    metrics: dict[str, float] = field(default_factory=dict)  # validation_* and test_* tags

    @property
    def label(self) -> str:
        """``v3 (champion)``: the version with its aliases."""
        return f"v{self.version} ({', '.join(self.aliases)})" if self.aliases else f"v{self.version}"


def _summary(version: ModelVersion, aliases: dict[str, str]) -> VersionSummary:
    tags = dict(version.tags or {})
    metrics: dict[str, float] = {}
    for key, value in tags.items():
        if key.startswith(("validation_", "test_")):
            try:
                metrics[key] = float(value)
            except ValueError:
                continue
    threshold = tags.get("threshold")
    return VersionSummary(
        name=version.name,
        version=str(version.version),
        aliases=sorted(alias for alias, v in aliases.items() if str(v) == str(version.version)),
        created=pd.Timestamp(version.creation_timestamp, unit="ms", tz="UTC"),
        family=tags.get("family"),
        trained_at=tags.get("trained_at"),
        threshold=float(threshold) if threshold is not None else None,
        candidate_run_id=tags.get("candidate_run_id"),
        metrics=metrics,
    )


def registered_versions(settings: Settings) -> list[VersionSummary]:
    """Every version of the configured model, newest first, with its aliases and metrics."""
    client = mlflow_client(settings)
    name = settings.training.model_name
    try:
        try:
            aliases = dict(client.get_registered_model(name).aliases or {})
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return []  # nothing trained yet
            raise
        versions = client.search_model_versions(f"name = '{name}'")
    except (MlflowException, requests.RequestException) as exc:
        raise _mlflow_failure(settings, exc) from exc
    summaries = [_summary(v, aliases) for v in versions]
    return sorted(summaries, key=lambda s: int(s.version), reverse=True)


def versions_table(summaries: list[VersionSummary], serving_version: str | None = None) -> pd.DataFrame:
    """One row per version: aliases, family, the headline metrics, and whether the predictor serves it."""
    rows = []
    for s in summaries:
        rows.append(
            {
                "version": s.version,
                "aliases": ", ".join(s.aliases),
                "serving": s.version == serving_version,
                "family": s.family,
                "trained_at": s.trained_at,
                "threshold": s.threshold,
                **{k: s.metrics.get(k) for k in HEADLINE_METRICS},
            }
        )
    return pd.DataFrame(rows)


HEADLINE_METRICS = (
    "validation_roc_auc",
    "validation_pr_auc",
    "validation_lift_at_10",
    "validation_f1",
    "test_roc_auc",
    "test_pr_auc",
    "test_lift_at_10",
    "test_f1",
)


@dataclass(frozen=True)
class VersionArtifacts:
    """What the candidate run of a version logged for people to look at."""

    run_id: str
    plots: dict[str, bytes]  # key of PLOTS -> PNG bytes (missing plots are absent)
    importance: dict[str, float]  # per input feature (one-hot columns summed back to their feature)


def importance_by_feature(importance: dict[str, float], feature_names: list[str]) -> dict[str, float]:
    """Sum the model's column importances (``num__age``, ``cat__job_admin.``) back to the input features."""
    by_feature = dict.fromkeys(feature_names, 0.0)
    longest_first = sorted(feature_names, key=len, reverse=True)  # `default` must not claim `default_x`
    for column, value in importance.items():
        name = column.split("__", 1)[1] if "__" in column else column
        owner = next((f for f in longest_first if name == f or name.startswith(f"{f}_")), None)
        if owner is not None:
            by_feature[owner] += float(value)
    return dict(sorted(by_feature.items(), key=lambda kv: kv[1], reverse=True))


def version_artifacts(settings: Settings, summary: VersionSummary) -> VersionArtifacts:
    """The ROC/PR/calibration plots and the feature importance logged by the version's candidate run."""
    if not summary.candidate_run_id:
        raise ValueError(f"version {summary.version} has no candidate_run_id tag: it was not registered by train")
    client = mlflow_client(settings)
    run_id = summary.candidate_run_id
    plots: dict[str, bytes] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            present = {a.path for a in client.list_artifacts(run_id, "plots")}
            for key, path in PLOTS.items():
                if path in present:
                    plots[key] = Path(client.download_artifacts(run_id, path, tmp)).read_bytes()
            raw = json.loads(Path(client.download_artifacts(run_id, IMPORTANCE_ARTIFACT, tmp)).read_text())
            features = schema.FeatureSchema.from_dict(
                json.loads(Path(client.download_artifacts(run_id, schema.ARTIFACT, tmp)).read_text())
            ).features
    except (MlflowException, requests.RequestException, OSError) as exc:
        raise _mlflow_failure(settings, exc) from exc
    return VersionArtifacts(run_id, plots, importance_by_feature(raw, features))


def load_model(settings: Settings, version: str) -> Pipeline:
    """The fitted pipeline of ``version`` (a number or an alias), loaded from the registry."""
    mlflow_client(settings)  # fail fast and clearly when the server is down
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    try:
        return registry.load_pipeline(settings.training.model_name, version)
    except (MlflowException, requests.RequestException, OSError) as exc:
        raise _mlflow_failure(settings, exc) from exc
