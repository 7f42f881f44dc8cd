"""The registry, its champion alias and the served model agree: before the native stack's predictor starts, the
model its payload holds must be the champion of the registry the stack runs (:func:`check_served_model`), and a
command that changes the champion refuses while the stack runs on a registry other than the one it points at
(:func:`foreign_to_running_stack`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa

from mlops.core.config import Settings
from mlops.core.platform.stack_errors import ServedModelMismatch
from mlops.core.platform.stack_state import ENV_FILE, State, run_folder


def foreign_to_running_stack(settings: Settings) -> str | None:
    """Why a command that changes the champion or the payload (demo, deploy, rollback, payload, run deploy |
    retrain) refuses: the native stack runs, and ``settings`` point at a registry other than its own, so the
    command would promote in one registry while the stack's predictor serves (and its supervisor restarts it on)
    the payload they share. None when the stack is not running or this shell points at it."""
    run = run_folder(settings)
    state = State.load(run)
    if state is None or not any(s.is_running() for s in state.services):
        return None
    mlflow = next((s for s in state.services if s.name == "mlflow"), None)
    if mlflow is None or settings.tracking_uri.rstrip("/") == mlflow.url.rstrip("/"):
        return None
    return (
        f"the native stack is up (run folder {run}): its predictor serves the champion of its registry at "
        f"{mlflow.url}, and this command would use {settings.tracking_uri}, so the registry, its champion and the "
        f"served model would disagree. Point this shell at the stack (set -a; . {run / ENV_FILE}; set +a) or stop "
        "it first (python -m mlops down)"
    )


def check_served_model(
    settings: Settings,
    registry_url: str,
    say: Callable[[str], None],
    discard: bool = False,
    configured_registry: str | None = None,
) -> str | None:
    """Before the predictor starts: is the model in its payload the champion of the registry at ``registry_url``
    (MLflow's backend store, read directly: the server is not up yet)?

    Returns the champion's version when the payload must be rewritten for it (it holds another version, or the
    same number from another registry: its run differs), else None. A payload holding a model while this
    registry has no champion would let the next retrain be promoted with no comparison: refused
    (:class:`ServedModelMismatch`, saying how to open the stores the model came from: ``configured_registry``,
    the registry the configuration names without the stack, default ``settings``'), unless ``discard``, which
    moves the payload aside.
    """
    from mlflow import MlflowClient

    from mlops.core.serving.model_card import MODEL_JSON, ModelCard
    from mlops.core.serving.payload import payload_dir
    from mlops.core.training import registry

    folder = payload_dir(settings)
    card = ModelCard.read(folder)
    if card is None:
        return None
    registry.quiet_mlflow()
    name = settings.training.model_name
    client = MlflowClient(tracking_uri=registry_url, registry_uri=registry_url)
    champion = registry.version_by_alias(client, name, registry.CHAMPION)
    served = f"{card.name} v{card.version} (run {card.run_id})"
    if champion is not None:
        run_id = champion.tags.get("candidate_run_id")
        if card.name == name and card.version == str(champion.version) and card.run_id == run_id:
            return None
        say(
            f"the payload in {folder} held {served}, not this registry's champion v{champion.version} (run {run_id}): "
            "the predictor will serve the champion"
        )
        return str(champion.version)
    where = sa.make_url(registry_url).render_as_string(hide_password=True)
    if discard:
        aside = folder.with_name(f"{folder.name}.discarded-{time.strftime('%Y%m%dT%H%M%S')}")
        folder.rename(aside)
        say(f"moved the payload holding {served} to {aside}: this stack's registry has no champion yet")
        return None
    ways = []
    configured = configured_registry or settings.tracking_uri
    if configured != registry_url and configured.startswith("sqlite:///"):
        ways.append(
            f"open the stores it came from (the configured ones, {configured}, where `make demo` registers): "
            "MLOPS_STACK__DATABASE=sqlite python -m mlops up"
        )
    ways.append("start with no model served (the payload is moved aside): python -m mlops up --discard-served-model")
    raise ServedModelMismatch(
        f"refusing to start: the predictor's payload {folder / MODEL_JSON} holds {served}, but the registry this "
        f"stack runs ({where}) has no champion of {name}. Serving it would let the next retrain be promoted with "
        "no comparison. Either\n  - " + "\n  - or ".join(ways)
    )
