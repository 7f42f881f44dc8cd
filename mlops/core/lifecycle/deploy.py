"""Deploy: the champion put in service. The payload written for it, the predictor switched to it (reloaded, or
started natively), the promotion undone when the switch fails, rollback, and the predictor's reload token.

Whether a version becomes champion at all is :mod:`mlops.core.lifecycle.promotion`'s decision.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

from mlops.core import services
from mlops.core.config import Settings
from mlops.core.lifecycle.promotion import (
    Decision,
    DeployError,
    champion_version,
    record_event,
    restore_champion,
    rollback_aliases,
)
from mlops.core.serving import native_predictor
from mlops.core.serving.model_card import ModelCard
from mlops.core.serving.native_predictor import run_dir
from mlops.core.serving.payload import payload_dir, write_payload
from mlops.core.serving.predictor_client import PredictorClient, PredictorError
from mlops.core.training import registry


def serve_or_revert(settings: Settings, deployed: dict[str, Any]) -> str:
    """:func:`switch_predictor`; when it fails after this deploy promoted a version, the promotion is undone.

    The champion alias goes back to the version it replaced (none for a first deploy), the payload follows
    it and a ``reverted`` event records why, so the alias never names a version the predictor does not
    serve. The error is raised again (the pipeline fails), naming both versions.
    """
    try:
        return switch_predictor(settings)
    except Exception as exc:
        if deployed.get("action") != "promoted":
            raise
        failed, previous = str(deployed["version"]), deployed.get("previous_version")
        client = registry.configure(settings)
        name = settings.training.model_name
        if previous is None:
            client.delete_registered_model_alias(name, registry.CHAMPION)
        else:
            restore_champion(settings, client, str(previous), failed)
        why = f"{type(exc).__name__}: {exc}"
        back = f"version {previous}" if previous is not None else "no champion"
        record_event(
            settings,
            Decision(
                "reverted",
                name,
                previous,
                failed,
                f"version {failed} was promoted but the predictor could "
                f"not be switched to it ({why}); the champion is {back} again",
                details={"failed": failed},
            ),
            registry.CHAMPION if previous is not None else None,
        )
        if previous is not None:
            write_payload(settings, str(previous))
        raise DeployError(
            f"the predictor could not be switched to version {failed}: {why}. The promotion is undone: the "
            f"champion is {back} again."
        ) from exc


def payload_for_champion(settings: Settings) -> tuple[Path, bool]:
    """Write the payload for the current champion unless it already serves it; ``(folder, rewritten)``."""
    version = champion_version(settings)
    folder = payload_dir(settings)
    if version is not None and _payload_serves(folder, version):
        return folder, False
    return write_payload(settings, version), True


def _payload_serves(folder: Path, version: str) -> bool:
    current = ModelCard.read(folder)
    if current is None or current.version != version:
        return False
    return (folder / current.model_dir / "MLmodel").is_file()


# ---- the running predictor -------------------------------------------------------------------------


def predictor(settings: Settings, timeout: float = 5.0) -> PredictorClient:
    return PredictorClient(settings.serving.url, timeout=timeout)


def predictor_answers(settings: Settings) -> bool:
    try:
        return predictor(settings).health()
    except PredictorError:
        return False


def served_version(settings: Settings) -> str | None:
    try:
        return predictor(settings).model().version
    except (PredictorError, ValueError):  # no answer, not ready, or a body that is no model card
        return None


# During a reload the old workers answer beside the new ones until the arbiter stops them: one answer with the
# new version says a new worker serves it, not that every worker does. The version must hold this many answers
# in a row, over at least this long, before deploy says it is served.
CONFIRMATIONS, CONFIRM_SECONDS = 6, 1.5


def wait_for_version(settings: Settings, version: str | None, timeout: float = 120.0) -> None:
    """Poll ``/model`` until every answer says the predictor serves ``version`` (None: until it answers
    /health)."""
    deadline = time.monotonic() + timeout
    seen: str | None = None
    streak, since = 0, 0.0
    while time.monotonic() < deadline:
        if version is None and predictor_answers(settings):
            return
        seen = served_version(settings)
        if version is not None and seen == version:
            streak, since = streak + 1, since if streak else time.monotonic()
            if streak >= CONFIRMATIONS and time.monotonic() - since >= CONFIRM_SECONDS:
                return
            time.sleep(0.3)
            continue
        streak = 0
        time.sleep(0.5)
    raise services.ServiceError(
        f"the predictor at {settings.serving.url} serves version {seen}, not {version}, after {timeout:.0f} s"
    )


def reload_predictor(settings: Settings) -> None:
    """Ask the running predictor for a graceful reload (POST /reload with the token from the environment)."""
    token = reload_token(settings)
    url = settings.serving.url.rstrip("/")
    if not token:
        raise DeployError(
            f"a predictor answers at {url} but MLOPS_SECRETS__RELOAD_TOKEN is not set (nor {token_file(settings)}): "
            "it cannot be asked to reload. Set the token it was started with."
        )
    try:
        predictor(settings, timeout=30).reload(token)
    except PredictorError as exc:
        if exc.status in (401, 403):
            raise DeployError(f"the predictor at {url} refused the reload token (HTTP {exc.status})") from exc
        raise services.ServiceError(str(exc)) from exc


def switch_predictor(settings: Settings) -> str:
    """Make the predictor at ``serving.url`` serve the payload: reload it, or start it natively."""
    card = ModelCard.read(payload_dir(settings))
    expected = card.version if card else None
    if predictor_answers(settings):
        if served_version(settings) == expected:
            return f"the predictor at {settings.serving.url} already serves version {expected}"
        reload_predictor(settings)
        wait_for_version(settings, expected)
        return f"the predictor at {settings.serving.url} reloaded: it serves version {expected}"
    if not settings.deploy.start_predictor:
        return f"no predictor answers at {settings.serving.url}; not started (deploy.start_predictor is false)"
    ensure_reload_token(settings)  # a predictor we start can always be reloaded by the next deploy
    proc = native_predictor.start(settings)
    try:
        services.wait_http(f"{settings.serving.url.rstrip('/')}/health", proc, timeout=120)
        wait_for_version(settings, expected)
    except services.ServiceError:
        proc.stop()
        raise
    return f"started the predictor (pid {proc.pid}) at {settings.serving.url}: it serves version {expected}"


def rollback(settings: Settings) -> tuple[Decision, str]:
    """The whole rollback: aliases, audit row, payload rewritten, predictor switched."""
    decision = rollback_aliases(settings)
    write_payload(settings, decision.version)
    return decision, switch_predictor(settings)


def token_file(settings: Settings) -> Path:
    return run_dir(settings) / "reload_token"


def reload_token(settings: Settings) -> str | None:
    """The configured reload token, else the one the platform generated for this work dir."""
    if settings.secrets.reload_token:
        return settings.secrets.reload_token
    path = token_file(settings)
    if not path.is_file():
        return None
    return path.read_text().strip() or None


def ensure_reload_token(settings: Settings) -> Path | None:
    """A reload token for this session when none is configured: generated once, kept in run/reload_token (0600).

    Never a committed default: the token is random per work dir, and exported to the environment so the
    pipelines and the predictor they start share it.
    """
    if settings.secrets.reload_token:
        return None
    path = token_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    os.environ["MLOPS_SECRETS__RELOAD_TOKEN"] = path.read_text().strip()
    return path
