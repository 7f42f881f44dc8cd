"""Promotion: the newest challenger becomes champion only if it is better on the same held-out data.

Policy (docs/deploy.md): the ``challenger`` and the ``champion`` are scored in-process on the same held-out
data (the prepared ``test`` split by default, or the parts named by ``holdout``, e.g. ``["test",
"batch:summer"]``). The challenger becomes ``champion`` only if its ``deploy.metric`` beats the champion's
by more than ``deploy.min_improvement``; the former champion keeps the alias ``previous-champion`` for
rollback. With no champion yet, the challenger is promoted. Every promotion, rejection and rollback is a
row in ``model_events``. Deploying a version that is already decided (the champion itself, one already
rejected against the same champion on the same holdout, or one rolled back) changes nothing and says so.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd
import sqlalchemy as sa
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from mlops.core.config import Settings
from mlops.core.data import features
from mlops.core.data.preparation import SPLITS, batch_path, labels, load_split, stored_batches
from mlops.core.monitoring import store
from mlops.core.training import registry
from mlops.core.training.tuning import score

DEFAULT_HOLDOUT = ("test",)
BATCH_PREFIX = "batch:"
ROLLED_BACK_TAG = "rolled_back_at"
Action = Literal["promoted", "rejected", "unchanged", "rolled_back", "reverted"]


class DeployError(ValueError):
    """Deploy or rollback cannot proceed as asked (bad holdout, no challenger, nothing to roll back)."""


@dataclass(frozen=True)
class Decision:
    action: Action
    model_name: str
    version: str | None  # the candidate (or, for a rollback, the restored champion)
    previous_version: str | None  # the champion before the decision
    reason: str
    metric: str | None = None
    candidate_value: float | None = None
    champion_value: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def champion(self) -> str | None:
        """The champion after the decision."""
        return self.version if self.action in ("promoted", "rolled_back", "reverted") else self.previous_version

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "champion": self.champion}


def parse_holdout(value: Sequence[str] | str | None) -> list[str]:
    """The holdout parts from a runtime variable: a list, a JSON list, a comma-separated string, or None."""
    if value is None or value == "" or value == []:
        return list(DEFAULT_HOLDOUT)
    if isinstance(value, str):
        text = value.strip()
        parsed = json.loads(text) if text.startswith("[") else [p.strip() for p in text.split(",") if p.strip()]
    else:
        parsed = list(value)
    if not parsed or not all(isinstance(p, str) and p for p in parsed):
        raise DeployError(f"holdout: expected a list of part names such as ['test', 'batch:summer'], got {value!r}")
    return list(dict.fromkeys(parsed))


def holdout_frame(settings: Settings, parts: Sequence[str]) -> pd.DataFrame:
    """The prepared parts concatenated: split names (``test``) and labeled batches (``batch:<name>``)."""
    frames = []
    for part in parts:
        if part.startswith(BATCH_PREFIX):
            path = batch_path(settings, part[len(BATCH_PREFIX) :])
            if not path.exists():
                known = [f"{BATCH_PREFIX}{name}" for name in stored_batches(settings)]
                raise DeployError(f"holdout: no prepared batch {part!r} (prepared batches: {known or 'none'})")
            frames.append(pd.read_parquet(path))
        elif part in SPLITS:
            if part != "test":
                raise DeployError(f"holdout: {part!r} was used to fit or tune the models; use 'test' or batches")
            frames.append(load_split(settings, part))
        else:
            raise DeployError(f"holdout: unknown part {part!r}; use 'test' or 'batch:<name>'")
    return pd.concat(frames, ignore_index=True)


def evaluate_version(settings: Settings, version: str, frame: pd.DataFrame) -> dict[str, float]:
    """ROC-AUC and PR-AUC of one registered version on ``frame``, scored in-process."""
    pipeline = registry.load_pipeline(settings.training.model_name, version)
    proba = pipeline.predict_proba(features.normalise(frame, settings.dataset))[:, 1]
    y = labels(frame, settings)
    return {"roc_auc": score("roc_auc", y, proba), "pr_auc": score("pr_auc", y, proba)}


def record_event(settings: Settings, decision: Decision, alias: str | None) -> None:
    url = settings.monitoring_db
    with store.transaction(url) as conn:
        conn.execute(
            store.model_events.insert().values(
                model_name=decision.model_name,
                version=decision.version,
                action=decision.action,
                alias=alias,
                previous_version=decision.previous_version,
                metric=decision.metric,
                candidate_value=decision.candidate_value,
                champion_value=decision.champion_value,
                reason=decision.reason,
                details=decision.details,
            )
        )


def events(settings: Settings, model_name: str | None = None) -> list[dict[str, Any]]:
    """The audit trail of one model (default: the configured one), oldest first."""
    url = settings.monitoring_db
    table = store.model_events
    with store.connection(url) as conn:
        rows = conn.execute(
            sa.select(table)
            .where(table.c.model_name == (model_name or settings.training.model_name))
            .order_by(table.c.id)
        )
        return [dict(row._mapping) for row in rows]


def _already_rejected(settings: Settings, candidate: str, champion: str, holdout: list[str]) -> dict[str, Any] | None:
    """The earlier rejection of ``candidate`` against the same champion, metric, margin and holdout."""
    for event in reversed(events(settings)):
        details = event.get("details") or {}
        if (
            event["action"] == "rejected"
            and event["version"] == candidate
            and event["previous_version"] == champion
            and event["metric"] == settings.deploy.metric
            and details.get("holdout") == holdout
            and details.get("min_improvement") == settings.deploy.min_improvement
        ):
            return event
    return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def promote_if_better(settings: Settings, holdout: Sequence[str] | str | None = None) -> Decision:
    """Compare ``@challenger`` with ``@champion`` on the same held-out data; move the aliases if it wins."""
    client = registry.configure(settings)
    name = settings.training.model_name
    parts = parse_holdout(holdout)
    metric, margin = settings.deploy.metric, settings.deploy.min_improvement
    challenger = registry.version_by_alias(client, name, registry.CHALLENGER)
    champion = registry.version_by_alias(client, name, registry.CHAMPION)
    current = str(champion.version) if champion else None
    if challenger is None:
        raise DeployError(f"model {name!r} has no version with alias {registry.CHALLENGER!r}: run train first")
    candidate = str(challenger.version)
    if candidate == current:
        return Decision("unchanged", name, candidate, current, f"version {candidate} is already the champion")
    if ROLLED_BACK_TAG in challenger.tags:
        reason = (
            f"version {candidate} was rolled back at {challenger.tags[ROLLED_BACK_TAG]}; "
            "register a new challenger to deploy"
        )
        return Decision("unchanged", name, candidate, current, reason)
    if current is not None:
        earlier = _already_rejected(settings, candidate, current, parts)
        if earlier is not None:
            reason = f"version {candidate} was already rejected against champion {current}: {earlier['reason']}"
            return Decision(
                "unchanged",
                name,
                candidate,
                current,
                reason,
                metric,
                earlier["candidate_value"],
                earlier["champion_value"],
            )

    frame = holdout_frame(settings, parts)
    details: dict[str, Any] = {"holdout": parts, "rows": len(frame), "min_improvement": margin}
    details["candidate"] = evaluate_version(settings, candidate, frame)
    candidate_value = details["candidate"][metric]
    if current is None:
        decision = Decision(
            "promoted",
            name,
            candidate,
            None,
            f"no champion yet: version {candidate} is promoted ({metric} {candidate_value:.4f} on {'+'.join(parts)})",
            metric,
            candidate_value,
            None,
            details,
        )
    else:
        details["champion"] = evaluate_version(settings, current, frame)
        champion_value = details["champion"][metric]
        gain = candidate_value - champion_value
        better = gain > margin
        verdict = "beats" if better else "does not beat"
        reason = (
            f"version {candidate} {verdict} champion {current} by more than {margin:g} on {metric} "
            f"({candidate_value:.4f} vs {champion_value:.4f}, {gain:+.4f}, {len(frame):,} rows of {'+'.join(parts)})"
        )
        decision = Decision(
            "promoted" if better else "rejected",
            name,
            candidate,
            current,
            reason,
            metric,
            candidate_value,
            champion_value,
            details,
        )
    if decision.action == "promoted":
        _move_aliases(client, name, new_champion=candidate, old_champion=current)
        client.set_model_version_tag(name, candidate, "promoted_at", _now())
    record_event(settings, decision, registry.CHAMPION if decision.action == "promoted" else None)
    return decision


def _move_aliases(client: MlflowClient, name: str, new_champion: str, old_champion: str | None) -> None:
    if old_champion is not None:
        client.set_registered_model_alias(name, registry.PREVIOUS_CHAMPION, old_champion)
    client.set_registered_model_alias(name, registry.CHAMPION, new_champion)


def _restorable(client: MlflowClient, name: str, version: str | None) -> ModelVersion | None:
    if version is None:
        return None
    try:
        found = client.get_model_version(name, version)
    except Exception:  # deleted versions cannot be restored
        return None
    return None if ROLLED_BACK_TAG in found.tags else found


def rollback_aliases(settings: Settings) -> Decision:
    """``previous-champion`` becomes ``champion`` again; the demoted version is marked as rolled back.

    The new ``previous-champion`` is the version the restored one had replaced when it was promoted
    (from ``model_events``), so repeated rollbacks walk back through the promotion history.
    """
    client = registry.configure(settings)
    name = settings.training.model_name
    champion = registry.version_by_alias(client, name, registry.CHAMPION)
    previous = registry.version_by_alias(client, name, registry.PREVIOUS_CHAMPION)
    if champion is None:
        raise DeployError(f"model {name!r} has no champion: nothing to roll back")
    if previous is None:
        raise DeployError(f"model {name!r} has no {registry.PREVIOUS_CHAMPION!r}: nothing to roll back to")
    demoted, restored = str(champion.version), str(previous.version)
    client.set_model_version_tag(name, demoted, ROLLED_BACK_TAG, _now())
    older = restore_champion(settings, client, restored, demoted)
    decision = Decision(
        "rolled_back",
        name,
        restored,
        demoted,
        f"version {demoted} replaced by the previous champion {restored}",
        details={"previous_champion_after": older},
    )
    record_event(settings, decision, registry.CHAMPION)
    return decision


def restore_champion(settings: Settings, client: MlflowClient, restored: str, demoted: str) -> str | None:
    """``restored`` becomes champion again; previous-champion becomes the version it had replaced when it was
    promoted (from ``model_events``), so repeated rollbacks walk back through the promotion history."""
    name = settings.training.model_name
    client.set_registered_model_alias(name, registry.CHAMPION, restored)
    promotions = [e for e in events(settings) if e["action"] == "promoted" and e["version"] == restored]
    older = promotions[-1]["previous_version"] if promotions else None
    older_version = _restorable(client, name, older)
    if older_version is not None and str(older_version.version) not in (restored, demoted):
        client.set_registered_model_alias(name, registry.PREVIOUS_CHAMPION, str(older_version.version))
        return str(older_version.version)
    with contextlib.suppress(Exception):  # MLflow raises when the alias is not set
        client.delete_registered_model_alias(name, registry.PREVIOUS_CHAMPION)
    return None


def champion_version(settings: Settings) -> str | None:
    client = registry.configure(settings)
    found = registry.version_by_alias(client, settings.training.model_name, registry.CHAMPION)
    return str(found.version) if found else None
