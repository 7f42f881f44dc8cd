"""One gate in front of every route of Mage's server, its policy derived from Mage's own route table.

Mage 0.9.80 authenticates only the handlers that derive from its ``BaseApiHandler`` (``OAuthMiddleware`` and
its policies: ``/api/<resource>...``). Every other handler of ``mage_ai.server.server.make_app`` answers
anyone: ``/api/events`` and ``/api/event_matchers`` (an event matcher bound to a trigger turns any posted event
into a run of it), ``/api/runs/<token>`` (runs any block of any pipeline with the token of any API trigger),
the downloads, block analyses, event streams and websockets. And every one sends
``Access-Control-Allow-Origin: *``.

:func:`install` wraps ``make_app``: each handler class of the route table is replaced by a subclass whose
``prepare`` (before any of Mage's code reads the body, stores or logs it) refuses, in this order,

1. a body over the route's bound: 413 (the API trigger's is ``orchestration.max_webhook_bytes``; a refused
   body sent with the retrain trigger's right token is recorded by its size, as ``retrain.receive`` does);
2. a closed route (:data:`CLOSED`): 403;
3. a request without a logged-in user (Mage's own session: the ``oauth_token`` cookie or header), unless the
   route and method are in :data:`OPEN` or the handler authenticates by itself (Mage's ``BaseApiHandler``):
   401. A handler class not named here is login-required.

No response carries ``Access-Control-Allow-*`` (the UI is served by Mage itself, same origin), and
websockets accept only same-origin upgrades. Tokens in any route's path (a ``token`` group in its pattern)
are redacted from every log record (:class:`RedactPathTokens`).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable
from typing import Any

# handler class -> (methods answered without a login, why): docs/reliability.md, "Mage", lists the same
OPEN: dict[str, tuple[frozenset[str], str]] = {
    "MainPageHandler": (frozenset({"GET"}), "the UI's HTML shell (the sign-in page among them): no data"),
    "PipelineRunsPageHandler": (frozenset({"GET"}), "the UI's HTML shell: no data"),
    "StaticFileHandler": (frozenset({"GET", "HEAD"}), "the UI's scripts, styles, fonts and images"),
    "ApiTriggerPipelineHandler": (frozenset({"POST"}), "an API trigger: it checks the trigger's own token"),
}
# Handlers that authenticate by themselves: Mage's OAuthMiddleware and policies (sign-in, /api/status and the
# few reads Mage's policies make public are answered by them; everything else needs the owner's login).
SELF_AUTHENTICATING = ("BaseApiHandler",)
CLOSED: dict[str, str] = {
    "TerminalWebsocketServer": "a shell for any websocket client before any login check",
    "ApiRunHandler": "runs any block of any pipeline with any API trigger's token; the platform never uses it",
}
TRIGGER_HANDLER = "ApiTriggerPipelineHandler"
MAX_BODY_BYTES = 4 * 1024 * 1024  # every other route: Mage's UI sends small JSON bodies (editing is off)
SERVER_MAX_BODY_BYTES = 32 * 1024 * 1024  # tornado's own bound: a larger body is cut off with a 400


def _names(cls: type) -> set[str]:
    return {klass.__name__ for klass in cls.__mro__}


def _route_policy(cls: type) -> tuple[str, frozenset[str]]:
    """("closed" | "self" | "login", methods open without a login)."""
    names = _names(cls)
    if names & set(CLOSED):
        return "closed", frozenset()
    if names & set(SELF_AUTHENTICATING):
        return "self", frozenset()
    open_methods = next((OPEN[name][0] for name in names if name in OPEN), frozenset())
    return "login", open_methods


def logged_in_user(handler: Any) -> Any:
    """The user of Mage's session the request carries (Mage's own token check, as its OAuthMiddleware does it,
    without the public client id a browser's navigation or websocket upgrade does not send), else None."""
    from mage_ai.api.utils import authenticate_client_and_token, parse_cookie_header
    from mage_ai.authentication.oauth2 import decode_token
    from mage_ai.orchestration.db import db_connection
    from mage_ai.orchestration.db.models.oauth import Oauth2Application
    from mage_ai.server.api.constants import COOKIE_OAUTH_TOKEN, HEADER_OAUTH_TOKEN
    from mage_ai.settings import OAUTH2_APPLICATION_CLIENT_ID
    from mage_ai.shared.requests import get_bearer_auth_token_from_headers

    headers = handler.request.headers
    try:
        token = headers.get(HEADER_OAUTH_TOKEN) or (
            get_bearer_auth_token_from_headers(headers) if headers.get("Authorization") else None
        )
        if not token:
            cookie = parse_cookie_header(headers.get("Cookie", "")).get(COOKIE_OAUTH_TOKEN)
            token = decode_token(cookie).get("token") if cookie else None
        if not token:
            return None
        client = Oauth2Application.query_client(OAUTH2_APPLICATION_CLIENT_ID)
        if client is None:
            return None
        oauth_token, valid = authenticate_client_and_token(client.id, token)
        return oauth_token.user if oauth_token is not None and valid else None
    except Exception:  # a malformed token, or the database: no user
        db_connection.session.rollback()
        return None


def _refuse(handler: Any, status: int, message: str) -> None:
    handler.set_status(status)
    handler.set_header("Content-Type", "application/json")
    handler.finish(json.dumps({"error": {"code": status, "message": message}}))


def _trigger_token_matches(handler: Any) -> bool:
    """The request carries its API trigger's token (in the path, or as Mage's ``/api_trigger`` takes it, a
    bearer token)."""
    from mage_ai.orchestration.db import db_connection
    from mage_ai.orchestration.db.models.schedules import PipelineSchedule
    from mage_ai.shared.requests import get_bearer_auth_token_from_headers

    kwargs = handler.path_kwargs
    try:
        token = kwargs.get("token") or get_bearer_auth_token_from_headers(handler.request.headers) or ""
        schedule = PipelineSchedule.query.get(int(kwargs.get("pipeline_schedule_id", "")))
        expected = str(schedule.token or "") if schedule is not None else ""
    except Exception:  # not a number, or the database
        db_connection.session.rollback()
        return False
    return bool(expected and token and hmac.compare_digest(expected.encode(), str(token).encode()))


def gated(cls: type, trigger_bytes: int, on_oversized_trigger: Callable[[Any, int], None] | None = None) -> type:
    """``cls`` behind the gate (module docstring); ``trigger_bytes`` bounds an API trigger's body."""
    import tornado.websocket

    kind, open_methods = _route_policy(cls)
    names = _names(cls)
    is_trigger = TRIGGER_HANDLER in names
    limit = trigger_bytes if is_trigger else MAX_BODY_BYTES
    base: Any = cls

    class Gated(base):
        def set_header(self, name: str, value: Any) -> None:
            if not name.lower().startswith("access-control-allow-"):
                super().set_header(name, value)

        def prepare(self) -> Any:
            size = len(self.request.body or b"")
            if size > limit:
                if is_trigger and on_oversized_trigger is not None and _trigger_token_matches(self):
                    on_oversized_trigger(self, size)
                return _refuse(self, 413, f"the body is {size:,} bytes, over this route's {limit:,}")
            if kind == "closed":
                return _refuse(self, 403, "this route of Mage is closed on this platform")
            method = self.request.method
            needs_login = kind == "login" and method not in open_methods
            if (needs_login or method == "OPTIONS") and logged_in_user(self) is None:  # Mage's 204 checks nothing
                return _refuse(self, 401, "log in to Mage first")
            return super().prepare()

        if issubclass(cls, tornado.websocket.WebSocketHandler):

            def check_origin(self, origin: str) -> bool:  # Mage's answers True for any origin
                return bool(tornado.websocket.WebSocketHandler.check_origin(self, origin))

    Gated.__name__ = Gated.__qualname__ = cls.__name__
    Gated.__module__ = cls.__module__
    return Gated


def token_patterns(app: Any) -> list[re.Pattern[str]]:
    """Search patterns of every route whose path carries a ``token`` group, from the application's rules."""
    found = []
    for rule in app.wildcard_router.rules:
        regex = getattr(rule.matcher, "regex", None)
        if regex is not None and "token" in regex.groupindex:
            found.append(re.compile(regex.pattern.lstrip("^").rstrip("$")))
    return found


class RedactPathTokens(logging.Filter):
    """A route's ``token`` path segment becomes ``<redacted>`` in a record's message (tornado's access log,
    its uncaught-exception log with the request's repr, Mage's own loggers)."""

    def __init__(self, patterns: list[re.Pattern[str]]) -> None:
        super().__init__()
        self.patterns = patterns

    def redact(self, text: str) -> str:
        for pattern in self.patterns:
            text = pattern.sub(lambda m: _blank_group(m, "token"), text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def _blank_group(match: re.Match[str], group: str) -> str:
    start, end = match.span(group)
    offset = match.start()
    text = match.group(0)
    return text[: start - offset] + "<redacted>" + text[end - offset :]


def redact_logs(patterns: list[re.Pattern[str]]) -> RedactPathTokens:
    """The filter on every handler of the root logger and of every logger that exists (records propagated to a
    handler pass its filters, not their logger's ancestors') and on tornado's loggers themselves."""
    redactor = RedactPathTokens(patterns)
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]
    for logger in loggers:
        for handler in logger.handlers:
            if redactor not in handler.filters:
                handler.addFilter(redactor)
    for name in ("tornado.access", "tornado.application", "tornado.general"):
        logging.getLogger(name).addFilter(redactor)
    return redactor


def install(trigger_bytes: int, on_oversized_trigger: Callable[[Any, int], None] | None = None) -> None:
    """Wrap ``mage_ai.server.server.make_app``: every rule's handler behind the gate (an API trigger's body
    bounded by ``trigger_bytes``), tornado's body bound set on ``listen``, path tokens redacted from the logs."""
    import tornado.web
    from mage_ai.server import server

    original = server.make_app
    if getattr(original, "_mlops_gated", False):
        return

    def make_app(*args: Any, **kwargs: Any) -> tornado.web.Application:
        app = original(*args, **kwargs)
        for rule in app.wildcard_router.rules:
            if isinstance(rule.target, type) and issubclass(rule.target, tornado.web.RequestHandler):
                rule.target = gated(rule.target, trigger_bytes, on_oversized_trigger)
        listen = app.listen

        def bounded_listen(port: int, address: str | None = None, **options: Any) -> Any:
            options.setdefault("max_body_size", SERVER_MAX_BODY_BYTES)
            options.setdefault("max_buffer_size", SERVER_MAX_BODY_BYTES)
            return listen(port, address, **options)

        app.listen = bounded_listen
        redact_logs(token_patterns(app))
        return app

    make_app._mlops_gated = True  # type: ignore[attr-defined]
    server.make_app = make_app


MASK = "[API_TOKEN_PLACEHOLDER]"  # what Mage's own HIDE_API_TRIGGER_TOKEN shows


def hide_trigger_tokens() -> None:
    """With ``HIDE_API_TRIGGER_TOKEN`` Mage masks a trigger's token in its API (and keeps it out of
    ``triggers.yaml``) except when it is rotated; two gaps closed here: the answer to *creating* a trigger
    shows its new token once (its creator needs the URL, as after a rotation), and the pipeline runs list no
    longer carries every run's ``pipeline_schedule_token``."""
    from mage_ai.api.operations import constants
    from mage_ai.api.presenters.PipelineSchedulePresenter import PipelineSchedulePresenter
    from mage_ai.orchestration.db.models.schedules import PipelineRun
    from mage_ai.settings.server import HIDE_API_TRIGGER_TOKEN

    presenter: Any = PipelineSchedulePresenter
    if not HIDE_API_TRIGGER_TOKEN or getattr(presenter, "_mlops_patched", False):
        return
    prepare_present = presenter.prepare_present

    async def present(self: Any, **kwargs: Any) -> Any:
        data = await prepare_present(self, **kwargs)
        if kwargs.get("format") == constants.CREATE and isinstance(data, dict) and hasattr(self.model, "token"):
            data["token"] = self.model.token
        return data

    presenter.prepare_present = present
    presenter._mlops_patched = True
    run: Any = PipelineRun
    run.pipeline_schedule_token = property(lambda self: MASK)
