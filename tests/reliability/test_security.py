"""Security: tokens on every state-changing endpoint, no default credentials, no committed secrets, loopback only."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import yaml

from mlops.core import config, services
from mlops.core.lifecycle import deploy
from mlops.core.platform import orchestration, stack_state
from mlops.core.serving import native_predictor
from mlops.testing.drills import listening

from .conftest import Predictor

ROOT = Path(__file__).resolve().parents[2]
TOKEN = secrets.token_hex(16)
SCORING = {("POST", "/predict"), ("POST", "/explain")}  # read-only: they score, they change nothing


@pytest.fixture(scope="module")
def predictor(start_predictor: Callable[..., Predictor], small_payload: Path, throwaway_postgres) -> Predictor:  # type: ignore[no-untyped-def]
    env = {"MLOPS_STORES__MONITORING_DB": throwaway_postgres.database("security"), "MLOPS_SECRETS__RELOAD_TOKEN": TOKEN}
    return start_predictor(small_payload, env=env)


def workers(predictor: Predictor) -> set[int]:
    """The gunicorn arbiter's worker pids (a reload replaces them all)."""
    return {p.pid for p in psutil.Process(predictor.process.pid).children()}


def state_changing(predictor: Predictor) -> list[tuple[str, str]]:
    document = predictor.get("/openapi.json").json()
    return [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method.upper() not in ("GET", "HEAD", "OPTIONS") and (method.upper(), path) not in SCORING
    ]


def test_every_state_changing_endpoint_refuses_a_missing_or_wrong_token(predictor: Predictor) -> None:
    endpoints = state_changing(predictor)
    assert ("POST", "/reload") in endpoints
    before = workers(predictor)
    for method, path in endpoints:
        for headers, status in (
            ({}, 401),
            ({"Authorization": "Bearer"}, 401),
            ({"Authorization": f"Basic {TOKEN}"}, 401),
            ({"Authorization": "Bearer not-the-token"}, 403),
            ({"Authorization": "bearer not-the-token"}, 403),  # the scheme is case-insensitive: the token is checked
            ({"Authorization": "BEARER not-the-token"}, 403),
            ({"Authorization": f"Bearer {TOKEN[:-1]}"}, 403),
            ({"Authorization": f"Bearer {TOKEN}x"}, 403),
        ):
            response = predictor.post(path, headers=headers) if method == "POST" else None
            assert response is not None, f"{method} {path}: add it to this test"
            assert response.status_code == status, (path, headers, response.status_code, response.text)
            assert response.json()["error"]
    assert workers(predictor) == before  # no reload happened
    document = predictor.get("/openapi.json").json()
    for method, path in endpoints:
        assert document["paths"][path][method.lower()].get("security"), f"{method} {path} documents no security"


def test_the_predictor_listens_on_loopback_only(predictor: Predictor) -> None:
    sockets = listening(predictor.process.pid)
    assert sockets, "found no listening socket of the predictor"
    assert {ip for ip, _ in sockets} == {"127.0.0.1"}, sockets


def test_native_services_default_to_loopback() -> None:
    defaults = config.load(environ={})
    assert defaults.serving.host == "127.0.0.1"
    for url in (defaults.serving.url, defaults.orchestration.mage_url):
        assert url.split("//", 1)[1].startswith("127.0.0.1:"), url
    assert services.mlflow_server.__defaults__ == ("127.0.0.1",)
    sources = {
        "stack.py": "".join(  # every module of the native stack, however it is split
            path.read_text()
            for path in sorted((ROOT / "mlops/core/platform").glob("*.py"))
            if path.name.startswith("stack") or path.name == "local_postgres.py"
        ),
        "services.py": (ROOT / "mlops/core/services.py").read_text(),
        "orchestration.py": (ROOT / "mlops/core/platform/orchestration.py").read_text(),
    }
    assert "listen_addresses=127.0.0.1" in sources["stack.py"]
    assert '"--server.address", "127.0.0.1"' in sources["stack.py"]
    assert '"GF_SERVER_HTTP_ADDR": "127.0.0.1"' in sources["stack.py"]
    for name, text in sources.items():
        assert "0.0.0.0" not in text, f"{name} binds a wildcard address"


# ---- default credentials ------------------------------------------------------------------------------------

SECRET_VARIABLE = re.compile(r"PASSWORD|TOKEN|SECRET")


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_gives_no_secret_a_default_and_publishes_on_loopback() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for match in re.finditer(r"\$\{(\w+)(:?[-?])?([^}]*)\}", text):
        name, operator = match.group(1), match.group(2)
        if SECRET_VARIABLE.search(name):
            assert operator == ":?", f"${{{name}}} must be required (:?), not {match.group(0)}"
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("${BIND_ADDRESS:-127.0.0.1}:"), f"{name} publishes {port} beyond loopback"
        for key, value in (service.get("environment") or {}).items():
            if SECRET_VARIABLE.search(key) and "USER" not in key:
                assert "${" in str(value) and ":?" in str(value), f"{name}: {key} is not a required variable"


def test_env_example_leaves_every_secret_empty() -> None:
    for line in (ROOT / ".env.example").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            if SECRET_VARIABLE.search(key) and "USER" not in key:
                assert value.strip() == "", f".env.example gives {key} a value"


def test_mage_never_runs_with_its_default_owner() -> None:
    """Mage 0.9.80 requires login by default and creates a built-in owner (password ``admin``) unless
    DEFAULT_OWNER_PASSWORD is set: the compose Mage must get a required password from .env, the native one
    from MLOPS_SECRETS__MAGE_OWNER_PASSWORD."""
    mage = compose()["services"]["mage"]["environment"]
    auth = str(mage.get("REQUIRE_USER_AUTHENTICATION", "1")).lower() not in ("0", "false")
    if auth:
        assert ":?" in str(mage.get("DEFAULT_OWNER_PASSWORD", "")), "the Mage owner would have the password admin"
    # natively too (orchestration.mage_server): login on, on loopback, and no start without an owner password
    with pytest.raises(orchestration.OrchestrationError, match="MLOPS_SECRETS__MAGE_OWNER_PASSWORD"):
        orchestration.mage_server(config.load(environ={}), "sqlite:///unused.db", Path("/dev/null"))
    settings = config.load(environ={"MLOPS_SECRETS__MAGE_OWNER_PASSWORD": "owner-password-for-this-test"})
    proc = orchestration.mage_server(settings, "sqlite:///unused.db", Path("/dev/null"))
    assert proc.env["REQUIRE_USER_AUTHENTICATION"] == "1"
    assert proc.env["DEFAULT_OWNER_PASSWORD"] == "owner-password-for-this-test"
    assert proc.command[proc.command.index("--host") + 1] == "127.0.0.1"
    for path in git_files():  # the docs may name it; no configuration may use it
        if not path.endswith(".md"):
            assert "admin@" + "admin.com" not in read(path), f"{path} uses Mage's default owner"


def test_grafana_and_postgres_have_no_default_password() -> None:
    env = compose()["services"]["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    source = (ROOT / "grafana/provisioning/datasources/postgres.yaml").read_text()
    assert re.search(r"password:\s*\$\{?GRAFANA_DB_PASSWORD", source), "the datasource password is not from env"
    postgres = compose()["services"]["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "POSTGRES_HOST_AUTH_METHOD" not in postgres  # never `trust`
    # natively the stack generates each password (0600 file) unless the environment gives one
    assert {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "MLOPS_SECRETS__MAGE_OWNER_PASSWORD"} <= set(
        stack_state.GENERATED_SECRETS
    )
    defaults = config.load(environ={})
    assert defaults.secrets.reload_token is None and defaults.secrets.retrain_token is None
    assert defaults.secrets.mage_owner_password is None
    with pytest.raises(orchestration.OrchestrationError, match="RETRAIN_TOKEN is not set"):
        orchestration.retrain_trigger_url(defaults)


# ---- committed secrets --------------------------------------------------------------------------------------

# Built from parts so that this file does not match its own patterns.
PATTERNS = {
    "private key": re.compile("-----BEGIN ([A-Z]+ )?" + "PRIVATE KEY-----"),
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key": re.compile(r"aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+=]{40}", re.I),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}"),
    "password in a URL": re.compile(r"[a-z+]+://[^/\s:@'\"]+:([^@\s'\"/]+)@"),
    "secret assigned a literal": re.compile(
        r"(?i)\b[\w-]*(password|passwd|secret|token|api[_-]?key)[\w-]*\s*[:=]\s*['\"]([^'\"\s]{8,})['\"]"
    ),
}
# Documented placeholders and references, not secrets.
ALLOWED_VALUES = re.compile(r"^(\$\{?[\w:?\- ]+\}?|<[\w-]+>|\{[\w.]+\}|\*+|x+|placeholder|changeme-in-\.env)$", re.I)
# A test's own throwaway token says so in its value (e.g. "reload-token-for-this-test").
TEST_VALUE = re.compile(r"(?i)test|example|dummy|fake|from-the-environment")


def git_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line for line in listed.splitlines() if (ROOT / line).is_file()]


def read(path: str) -> str:
    data = (ROOT / path).read_bytes()
    return "" if b"\0" in data[:4096] else data.decode("utf-8", errors="replace")


def findings(name: str, text: str) -> list[str]:
    found = []
    for kind, pattern in PATTERNS.items():
        for match in pattern.finditer(text):
            value = match.group(match.lastindex or 0) if match.lastindex else match.group(0)
            if kind in ("password in a URL", "secret assigned a literal") and ALLOWED_VALUES.match(value):
                continue
            if kind == "secret assigned a literal" and name.startswith("tests/") and TEST_VALUE.search(value):
                continue
            if kind == "secret assigned a literal" and re.match(r"^[\w.]+\(|^[A-Z_]+$|^\w+\.\w+", value):
                continue  # a call, an env var's name, or an attribute: not a literal secret
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"{name}:{line}: {kind}: {match.group(0)[:60]}")
    return found


def test_the_scanner_finds_planted_secrets() -> None:
    planted = "\n".join(
        [
            "-----BEGIN RSA " + "PRIVATE KEY-----",
            "key = 'AKIA" + "ABCDEFGHIJKLMNOP'",
            "GITHUB = 'ghp_" + "a" * 36 + "'",
            "url = 'postgresql://mlops:" + "hunter2hunter2@db:5432/x'",
            'db_password: "' + "s3cr3t-value-here" + '"',
            "RELOAD_TOKEN = '" + "0123456789abcdef" + "'",
        ]
    )
    assert len(findings("planted", planted)) == 6
    clean = "\n".join(
        [
            "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}",
            "password: $GRAFANA_DB_PASSWORD",
            "url = f'postgresql+psycopg2://{user}:{password}@127.0.0.1/postgres'",
            "token = secrets.token_hex(16)",
        ]
    )
    assert findings("clean", clean) == []


def test_no_secret_is_committed() -> None:
    tracked = git_files()
    env_files = [p for p in tracked if re.search(r"(^|/)\.env(\.|$)", p) and not p.endswith(".env.example")]
    assert env_files == [], f"environment files are committed: {env_files}"
    found = [f for path in tracked if not path.endswith(".lock") for f in findings(path, read(path))]
    assert found == [], "\n".join(found)


def test_a_predictor_deploy_starts_can_be_reloaded_by_the_next_deploy(
    small_payload: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no token configured, deploy generates one for the work dir before it starts a predictor, and the
    next deploy finds it there: a predictor the platform started is never one nobody can reload (#12, 8)."""
    port = services.free_port()
    url = f"http://127.0.0.1:{port}"
    # set, then deleted: monkeypatch then restores the variable's absence after deploy exported a token
    monkeypatch.setenv("MLOPS_SECRETS__RELOAD_TOKEN", "")
    monkeypatch.delenv("MLOPS_SECRETS__RELOAD_TOKEN")
    for key, value in {
        "MLOPS_PATHS__WORK_DIR": str(tmp_path / "work"),
        "MLOPS_SERVING__PORT": str(port),
        "MLOPS_SERVING__URL": url,
        "MLOPS_SERVING__PAYLOAD_DIR": str(small_payload),
        "MLOPS_SERVING__SPOOL_DIR": str(tmp_path / "spool"),
        "MLOPS_STORES__MONITORING_DB": f"sqlite:///{tmp_path / 'monitoring.db'}",
    }.items():
        monkeypatch.setenv(key, value)
    ours = config.load()
    assert ours.secrets.reload_token is None
    try:
        assert deploy.switch_predictor(ours).startswith("started the predictor")
        token = deploy.reload_token(config.load(environ={k: v for k, v in os.environ.items() if "RELOAD" not in k}))
        assert token and deploy.token_file(ours).stat().st_mode & 0o777 == 0o600
        answer = requests.post(f"{url}/reload", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert answer.status_code == 202, answer.text
    finally:
        native_predictor.stop(ours)
