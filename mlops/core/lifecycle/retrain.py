"""Retrain on a Grafana alert: take the webhook, retrain on the reference plus the labeled batches, deploy.

Policy (docs/monitoring.md):

- Every alert in a webhook body is recorded in ``alerts`` with the action taken and, later, its outcome.
- A run with no body at all (``python -m mlops run retrain``, Run@once in Mage's UI) is a retrain by hand:
  recorded with status ``by hand``, it always retrains (the deploy pipeline still promotes only a better model).
- Only ``firing`` alerts named ``monitoring.alert_name`` about this platform's model (label ``model`` =
  ``training.model_name``; an alert without that label counts as this model's) act; ``resolved`` ones,
  other names and other models' alerts (models sharing one monitoring database and Grafana) are recorded
  as ``ignored``. Each row records the model it is about.
- A replay of an alert already handled (same fingerprint and ``startsAt``; without a fingerprint, the same
  ``groupKey`` and ``startsAt``) is recorded as ``duplicate`` and does nothing. Grafana re-sends a firing
  alert every ``repeat_interval`` with the same ``startsAt``, so repeats never start a second retrain of a
  retrain that runs or succeeded. A retrain that failed (training or its deploy) turns its row's action into
  ``retrain_failed``: the next repeat of that alert retries.
- Retraining fits the configured model families on the reference's train split plus the fit part of every
  labeled batch (``monitoring.labeled_batches``); the rest of each batch is held out, written as the
  prepared batch ``<name>.holdout`` and, with the reference's test split, is the common holdout on which
  the deploy pipeline compares the new ``challenger`` with the ``champion``. Deploy promotes only a better
  model; aliases move only there, so a failure at any step leaves the champion serving.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, ValidationError
from sklearn.model_selection import train_test_split

from mlops.core.config import Settings
from mlops.core.data import preparation
from mlops.core.lifecycle import promotion
from mlops.core.monitoring import store
from mlops.core.monitoring.alerting import MODEL_LABEL
from mlops.core.monitoring.monitored_inputs import check_frame
from mlops.core.training import registry, tuning

HOLDOUT_SUFFIX = ".holdout"
DEPLOY_PIPELINE = "deploy"
BY_HAND = "by hand"  # the alerts row of a retrain nobody's alert asked for
FAILED = "retrain_failed"  # the alerts row's action once its retrain failed: the next repeat retries
_ADVISORY_LOCK = 7_351_205  # serialises concurrent webhooks on PostgreSQL (dedupe is read-then-write)


class AlertPayloadError(ValueError):
    """The webhook body is not a Grafana alert notification; the message names the field."""


class GrafanaAlert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str
    labels: dict[str, str] = {}
    startsAt: str | None = None  # Grafana's field names
    fingerprint: str | None = None


class GrafanaWebhook(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str
    alerts: list[GrafanaAlert]
    groupKey: str | None = None


def webhook_body(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The webhook body from Mage's block kwargs: the raw body (``event``) or its top-level keys."""
    event = variables.get("event")
    if isinstance(event, Mapping) and "alerts" in event:
        return dict(event)
    return {key: variables[key] for key in ("status", "alerts", "groupKey", "receiver") if key in variables}


def parse_webhook(body: Mapping[str, Any]) -> GrafanaWebhook:
    try:
        return GrafanaWebhook.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise AlertPayloadError(f"not a Grafana alert notification: {problems}") from exc


@dataclass
class AlertDecision:
    retrain: bool
    reason: str
    alert_id: int | None = None  # the alerts row the retrain reports its outcome to
    recorded: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _already_handled(conn: sa.Connection, alert: GrafanaAlert, group_key: str | None, model: str) -> int | None:
    """The id of the earlier row that acted on this same alert instance, if any."""
    table = store.alerts
    query = sa.select(table.c.id).where(
        table.c.action == "retrain", table.c.starts_at == alert.startsAt, table.c.model_name == model
    )
    if alert.fingerprint:
        query = query.where(table.c.fingerprint == alert.fingerprint)
    elif group_key:
        query = query.where(table.c.group_key == group_key)
    else:
        return None
    return conn.execute(query.order_by(table.c.id).limit(1)).scalar()


def receive(settings: Settings, body: Mapping[str, Any]) -> AlertDecision:
    """Record every alert of a webhook body and decide whether it starts a retrain (at most one per body)."""
    url = settings.monitoring_db
    size, limit = len(json.dumps(body, default=str).encode()), settings.orchestration.max_webhook_bytes
    if size > limit:
        raise AlertPayloadError(reject_oversized(settings, size))
    own = settings.training.model_name
    if not body:  # no alert at all: retraining by hand (`python -m mlops run retrain`, or Run@once in Mage)
        by_hand = {"status": BY_HAND, "action": "retrain", "outcome": "retraining", "payload": {}, "model_name": own}
        (alert_id,) = _insert(url, [by_hand])
        return AlertDecision(True, "retrain by hand (no alert in the trigger's body)", alert_id, [alert_id])
    try:
        hook = parse_webhook(body)
    except AlertPayloadError as exc:
        _insert(url, [{"status": "invalid", "action": "rejected", "outcome": str(exc), "payload": dict(body)}])
        raise
    expected = settings.monitoring.alert_name
    rows: list[dict[str, Any]] = []
    chosen: int | None = None  # index in rows of the alert that retrains
    with store.transaction(url) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
        for alert in hook.alerts:
            name, model = alert.labels.get("alertname"), alert.labels.get(MODEL_LABEL, own)
            row = {
                "alertname": name,
                "model_name": model[:200],
                "status": alert.status,
                "fingerprint": alert.fingerprint,
                "group_key": hook.groupKey,
                "starts_at": alert.startsAt,
                "payload": alert.model_dump(),
            }
            if alert.status != "firing":
                row |= {"action": "ignored", "outcome": f"{alert.status}: nothing to do"}
            elif name != expected:
                row |= {"action": "ignored", "outcome": f"alert {name!r} is not {expected!r}"}
            elif model != own:
                row |= {"action": "ignored", "outcome": f"about model {model!r}; this platform retrains {own!r}"}
            elif (earlier := _already_handled(conn, alert, hook.groupKey, own)) is not None:
                row |= {"action": "duplicate", "outcome": f"already handled by alert record {earlier}"}
            elif chosen is not None:
                row |= {"action": "duplicate", "outcome": "retrained together with another alert of this body"}
            else:
                row |= {"action": "retrain", "outcome": "retraining"}
                chosen = len(rows)
            rows.append(row)
        ids = [_insert_row(conn, row) for row in rows]
    if chosen is None:
        reasons = "; ".join(sorted({str(r["outcome"]) for r in rows})) or "no alerts in the body"
        return AlertDecision(False, f"no retrain: {reasons}", None, ids)
    return AlertDecision(True, f"alert {expected!r} firing since {rows[chosen]['starts_at']}", ids[chosen], ids)


def reject_oversized(settings: Settings, size: int) -> str:
    """Record a webhook body over ``orchestration.max_webhook_bytes`` by its size alone (the alerts table keeps
    what Grafana's bodies need, not more); the outcome. Mage's server refuses such a body to the retrain trigger
    with 413 before any run exists (``mlops.core.platform.mage_gate``) and records it here."""
    limit = settings.orchestration.max_webhook_bytes
    outcome = f"the body is {size:,} bytes, over orchestration.max_webhook_bytes ({limit:,})"
    row = {"status": "invalid", "action": "rejected", "outcome": outcome, "payload": {"bytes": size}}
    _insert(settings.monitoring_db, [row])
    return outcome


def _insert(url: str, rows: list[dict[str, Any]]) -> list[int]:
    """Record rows in ``alerts`` in one transaction; their ids."""
    with store.transaction(url) as conn:
        return [_insert_row(conn, row) for row in rows]


def _insert_row(conn: sa.Connection, row: dict[str, Any]) -> int:
    return int(conn.execute(store.alerts.insert().values(**row).returning(store.alerts.c.id)).scalar_one())


def record_outcome(settings: Settings, alert_id: int | None, outcome: str, failed: bool = False) -> None:
    """Write what came of an alert's retrain; a failed one becomes ``retrain_failed``, so a repeat retries."""
    if alert_id is None:
        return
    values = {"outcome": outcome, **({"action": FAILED} if failed else {})}
    with store.transaction(settings.monitoring_db) as conn:
        conn.execute(store.alerts.update().where(store.alerts.c.id == alert_id).values(**values))


def alerts(settings: Settings) -> list[dict[str, Any]]:
    """Every recorded alert about this platform's model (or about none: a body that was not an alert),
    oldest first."""
    url = settings.monitoring_db
    table = store.alerts
    about = sa.or_(table.c.model_name == settings.training.model_name, table.c.model_name.is_(None))
    with store.connection(url) as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table).where(about).order_by(table.c.id))]


# ---- retraining ------------------------------------------------------------------------------------


def labeled_batches(settings: Settings) -> list[str]:
    configured = settings.monitoring.labeled_batches
    return list(preparation.batch_names(settings) if configured is None else configured)


def split_labeled_batch(frame: pd.DataFrame, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A labeled batch as (train, validation, holdout), stratified, in the reference's proportions."""
    spec = settings.dataset.split
    fit, holdout = train_test_split(
        frame, test_size=spec.test_size, stratify=preparation.labels(frame, settings), random_state=spec.seed
    )
    train, validation = train_test_split(
        fit,
        test_size=spec.validation_size / (1 - spec.test_size),
        stratify=preparation.labels(fit, settings),
        random_state=spec.seed,
    )
    return train, validation, holdout


def training_frames(settings: Settings, batches: list[str]) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The reference's splits extended by the labeled batches; returns the frames and the holdout parts."""
    frames = {name: [frame] for name, frame in preparation.load_splits(settings).items()}
    holdout = ["test"]
    for name in batches:
        batch = preparation.load_batch(settings, name)
        if settings.dataset.target not in batch.columns:
            raise ValueError(f"batch {name!r} has no labels (column {settings.dataset.target!r}): cannot learn from it")
        check_frame(batch, settings, f"batch {name!r}")
        train, validation, held_out = split_labeled_batch(batch, settings)
        frames["train"].append(train)
        frames["validation"].append(validation)
        frames["test"].append(held_out)
        held_out.to_parquet(preparation.batch_path(settings, f"{name}{HOLDOUT_SUFFIX}"), index=False)
        holdout.append(f"batch:{name}{HOLDOUT_SUFFIX}")
    return {name: pd.concat(parts, ignore_index=True) for name, parts in frames.items()}, holdout


@dataclass
class Retrained:
    version: str | None
    holdout: list[str]
    batches: list[str]
    alert_id: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def retrain(settings: Settings, decision: Mapping[str, Any], batches: list[str] | None = None) -> Retrained:
    """Train a new ``challenger`` on the reference plus the labeled batches, if the alert decided so."""
    alert_id = decision.get("alert_id")
    if not decision.get("retrain"):
        return Retrained(None, [], [], alert_id, str(decision.get("reason", "no retrain")))
    chosen = batches if batches is not None else labeled_batches(settings)
    try:
        frames, holdout = training_frames(settings, chosen)
        result = tuning.train(settings, frames)
        client = registry.configure(settings)
        version = result.registered.version
        tags = {
            "retrained_for_alert": str(alert_id),
            "training_batches": ",".join(chosen),
            "holdout": ",".join(holdout),
        }
        for key, value in tags.items():
            client.set_model_version_tag(settings.training.model_name, version, key, value)
    except Exception as exc:
        record_outcome(settings, alert_id, f"failed while retraining: {exc.__class__.__name__}: {exc}", failed=True)
        raise
    reason = f"version {version} trained on the reference + {', '.join(chosen) or 'no batches'}"
    record_outcome(settings, alert_id, f"{reason}; deploying")
    return Retrained(version, holdout, chosen, alert_id, reason)


def deploy_retrained(
    settings: Settings, retrained: Mapping[str, Any], run_pipeline: Callable[[str, dict[str, Any]], None]
) -> dict[str, Any]:
    """Run the deploy pipeline on the common holdout; record what it decided for the new version."""
    version, alert_id = retrained.get("version"), retrained.get("alert_id")
    if version is None:
        return {"deployed": False, "reason": retrained.get("reason")}
    try:
        run_pipeline(DEPLOY_PIPELINE, {"holdout": list(retrained["holdout"])})
    except Exception as exc:
        outcome = f"version {version} trained; deploy failed: {exc}; the champion is unchanged"
        record_outcome(settings, alert_id, outcome, failed=True)
        raise
    event = latest_event(settings, str(version))
    if event is None:
        outcome = f"version {version} trained; deploy recorded no decision for it"
    else:
        outcome = f"version {version} {event['action']}: {event['reason']}"
    record_outcome(settings, alert_id, outcome)
    return {"deployed": True, "version": version, "outcome": outcome, "action": event["action"] if event else None}


def latest_event(settings: Settings, version: str) -> dict[str, Any] | None:
    table = store.model_events
    with store.connection(settings.monitoring_db) as conn:
        row = conn.execute(
            sa.select(table)
            .where(table.c.model_name == settings.training.model_name, table.c.version == version)
            .order_by(table.c.id.desc())
            .limit(1)
        ).first()
    return dict(row._mapping) if row else None


def quality_before_after(settings: Settings, before: str, after: str) -> list[dict[str, Any]]:
    """ROC-AUC of two versions on every batch; labeled batches are scored on their held-out part only."""

    learned = set(labeled_batches(settings))
    rows = []
    for name in preparation.batch_names(settings):
        part = f"{name}{HOLDOUT_SUFFIX}" if name in learned else name
        if not preparation.batch_path(settings, part).exists():
            part = name
        frame = preparation.load_batch(settings, part)
        scores = {v: promotion.evaluate_version(settings, v, frame)["roc_auc"] for v in {before, after}}
        rows.append({"batch": part, "rows": len(frame), "before": scores[before], "after": scores[after]})
    return rows
