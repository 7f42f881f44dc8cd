"""Every route of Mage's server called with every method and no login: what answers 2xx, and how.

The routes are Mage's own: ``mage_ai.server.server.make_app`` is called in this process and its rules are
read (nothing is hand-listed). Each pattern becomes one concrete path (its named groups filled with plausible
values: ids ``1``, resource ``pipelines``, the trigger's token a wrong one) and is called with GET, POST, PUT,
PATCH, DELETE and OPTIONS, once without any header and once with Mage's public client id (``X-API-KEY``, the
value its UI ships to every browser: no credential). An answer is *open* when it is 2xx and its JSON body
carries no ``error`` (Mage's API answers refusals with 200 and ``{"error": ...}``), or a websocket upgrade (101).

``check_routes(base_url)`` works against any Mage (native stack, compose, the soak benchmark)."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WRONG_TOKEN = "0f" * 16  # a token's shape (Mage routes only word characters there), not a real one
GROUP_VALUES = {
    "pipeline_schedule_id": "1",
    "event_matcher_id": "1",
    "token": WRONG_TOKEN,
    "pipeline_uuid": "retrain",
    "block_uuid": "receive_alert",
    "resource": "pipelines",
    "pk": "retrain",
    "child": "pipeline_schedules",
    "child_pk": "1",
    "uuid": "x",
}
# A free ``resource`` group is also filled with these: the resources Mage's own policies open to a client
# without a user (sign-in, status, the sign-in page's reads) and the ones that create or start runs.
EXTRA_RESOURCES = (
    "sessions",
    "oauths",
    "projects",
    "custom_designs",
    "statuses",
    "users",
    "pipeline_schedules",
    "pipeline_runs",
    "event_matchers",
    "block_runs",
)
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


@dataclass(frozen=True)
class Route:
    pattern: str
    handler: str
    path: str
    websocket: bool

    def paths(self) -> list[str]:
        """:attr:`path`, and for a pattern whose ``resource`` is free, the same with each of
        :data:`EXTRA_RESOURCES`."""
        if "(?P<resource>\\w+)" not in self.pattern:
            return [self.path]
        head, _, tail = self.path.partition("/api/pipelines")
        tail = re.sub(r"^/retrain", "/1", tail)  # these resources' ids are numbers: 1 exists (the trigger)
        return [self.path] + [f"{head}/api/{resource}{tail}" for resource in EXTRA_RESOURCES]


@contextmanager
def _no_side_effects() -> Iterator[None]:
    """``make_app`` writes an empty ``.ssh_tunnel/aws_emr.json`` under the repo path: into a temporary folder."""
    from mage_ai.server import server

    original = server.file_path_aws_emr
    with tempfile.TemporaryDirectory() as folder:
        server.file_path_aws_emr = lambda: os.path.join(folder, "aws_emr.json")
        try:
            yield
        finally:
            server.file_path_aws_emr = original


def route_table() -> list[Route]:
    """Mage's routes as its own router builds them, each with a concrete path."""
    import tornado.websocket
    from mage_ai.server import server

    with _no_side_effects():
        app = server.make_app()
    routes = []
    for rule in app.wildcard_router.rules:
        regex = rule.matcher.regex
        handler = rule.target
        websocket = isinstance(handler, type) and issubclass(handler, tornado.websocket.WebSocketHandler)
        routes.append(Route(regex.pattern, handler.__name__, concrete_path(regex.pattern), websocket))
    return routes


def concrete_path(pattern: str) -> str:
    """One path the pattern matches: named groups filled from :data:`GROUP_VALUES`, optional parts left out."""
    from re import _parser as parser  # type: ignore[attr-defined]

    parsed = parser.parse(pattern)
    names = {index: name for name, index in parsed.state.groupdict.items()}
    path = _generate(parsed, names) or "/"
    if not re.fullmatch(pattern.rstrip("$"), path):
        raise ValueError(f"synthesized {path!r} does not match {pattern!r}")
    return path


def _generate(items: Any, names: dict[int, str]) -> str:
    from re import _constants as c  # type: ignore[attr-defined]

    out = []
    for op, arg in items:
        if op == c.LITERAL:
            out.append(chr(arg))
        elif op == c.SUBPATTERN:
            group, _, _, inner = arg
            name = names.get(group) if group else None
            fixed = all(o == c.LITERAL for o, _ in inner)  # e.g. (?P<resource>file_contents)
            out.append(GROUP_VALUES.get(name, "x") if name and not fixed else _generate(inner, names))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT):
            low, _, inner = arg
            out.append(_generate(inner, names) * max(low, 0))
        elif op == c.IN:
            out.append("1" if any(o == c.CATEGORY or (o == c.LITERAL and chr(a) == "1") for o, a in arg) else "x")
        elif op == c.ANY:
            out.append(".")  # favicon.ico
        elif op == c.BRANCH:
            out.append(_generate(arg[1][0], names))
    return "".join(out)


def _is_open(response: requests.Response) -> bool:
    if response.status_code == 101:  # a websocket upgraded
        return True
    if not 200 <= response.status_code < 300:
        return False
    try:
        body = response.json()
    except ValueError:
        return True
    return not (isinstance(body, dict) and "error" in body)


def check_routes(base_url: str, timeout: float = 30) -> dict[str, Any]:
    """Call every route of Mage's table at ``base_url`` with every method, without a login.

    ``{"routes_checked": N, "calls": M, "open": [...], "open_state_changing": K, "cors_star": [...],
    "statuses": {...}}``; an ``open`` entry is ``"METHOD pattern"`` (each pattern once, whichever header set
    opened it)."""
    from mage_ai.settings import OAUTH2_APPLICATION_CLIENT_ID

    base = base_url.rstrip("/")
    routes = route_table()
    opened: set[tuple[str, str]] = set()
    cors: set[str] = set()
    statuses: dict[str, int] = {}
    calls = 0
    http = requests.Session()
    for route, path in [(r, p) for r in routes for p in r.paths()]:
        for method in METHODS:
            for headers in ({}, {"X-API-KEY": OAUTH2_APPLICATION_CLIENT_ID}):
                sent = dict(headers) | (UPGRADE if route.websocket and method == "GET" else {})
                body = b"{}" if method in STATE_CHANGING else None
                calls += 1
                try:
                    response = http.request(
                        method, base + path, data=body, headers=sent, timeout=timeout, allow_redirects=False
                    )
                except requests.ConnectionError:  # the server dropped the connection: no answer, not open
                    statuses["dropped"] = statuses.get("dropped", 0) + 1
                    http = requests.Session()
                    continue
                statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
                if _is_open(response):
                    opened.add((method, route.pattern if path == route.path else f"{route.pattern} ({path})"))
                if response.headers.get("Access-Control-Allow-Origin") == "*":
                    cors.add(f"{method} {route.pattern}")
                response.close()
    open_list = sorted(f"{method} {pattern}" for method, pattern in opened)
    return {
        "routes_checked": len(routes),
        "calls": calls,
        "open": open_list,
        "open_state_changing": sum(1 for method, _ in opened if method in STATE_CHANGING),
        "cors_star": sorted(cors),
        "statuses": dict(sorted(statuses.items())),
    }
