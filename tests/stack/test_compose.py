"""docker-compose.yml and the images, checked statically (tests/compose runs them for real): the compose file
against the current compose specification (dclint), every Dockerfile with hadolint, each image's pinned
requirements against uv.lock, and cross-checks that what each service builds, mounts, runs and reads exists in
the project and in .env.example."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from mlops.core import config, services
from mlops.core.monitoring import store
from mlops.core.platform import compose_env
from mlops.core.platform.compose_stack import SPARK_MASTER, SPARK_SERVICES
from mlops.core.serving import payload

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DCLINT = ROOT / "tools" / "compose-lint" / "node_modules" / ".bin" / "dclint"
HADOLINT = Path(sys.executable).with_name("hadolint")
# images/<service>/requirements.txt: uv.lock exported with the extras the service needs (the mage image is the
# Spark driver and the spark profile's master and workers too)
IMAGE_EXTRAS = {"mage": ("orchestration", "spark"), "streamlit": ("app",)}
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    return {k: str(v) for k, v in env.items()}


def mount_source(volume: str) -> str:
    """The host side of a volume entry, with compose's variables as .env.example sets them."""
    return interpolate(volume, compose_env.read(ENV_EXAMPLE)).split(":")[0]


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?message} with the given values (placeholders for secrets)."""
    return VARIABLE.sub(lambda m: env.get(m.group(1)) or (m.group(3) if m.group(2) in (":-", "-") else ""), value)


def test_compose_file_follows_the_compose_specification() -> None:
    assert DCLINT.is_file(), f"{DCLINT} missing: run `make setup` (npm ci --prefix tools/compose-lint)"
    result = subprocess.run(
        [str(DCLINT), str(COMPOSE), "--disable-rule", "no-unbound-port-interfaces"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "problems" not in result.stdout, f"dclint warnings:\n{result.stdout}"


def test_every_dockerfile_passes_hadolint() -> None:
    dockerfiles = sorted(ROOT.glob("images/**/Dockerfile"))
    assert {p.parent.name for p in dockerfiles} == {"mage", "mlflow", "streamlit", "predictor", "python", "postgres"}
    for dockerfile in dockerfiles:
        result = subprocess.run(
            [str(HADOLINT), "--no-color", "--failure-threshold", "error", str(dockerfile)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{dockerfile}:\n{result.stdout}{result.stderr}"


def uv_command() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else ["python3", "-m", "uv"]


def pins(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("image", sorted(IMAGE_EXTRAS))
def test_baked_requirements_match_uv_lock(image: str) -> None:
    """images/<service>/requirements.txt is uv.lock exported with the service's extra: `make image-requirements`
    regenerates it when the lock changes."""
    command = [*uv_command(), "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "--no-annotate"]
    extras = [arg for extra in IMAGE_EXTRAS[image] for arg in ("--extra", extra)]
    result = subprocess.run([*command, *extras], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    path = ROOT / "images" / image / "requirements.txt"
    assert pins(path.read_text()) == pins(result.stdout), f"{path} is out of date: run `make image-requirements`"


def test_predictor_image_requirements_are_what_serving_imports() -> None:
    """The compose predictor installs exactly what the deploy payload would (CPU-only XGBoost, no CUDA)."""
    path = ROOT / "images" / "predictor" / "requirements.txt"
    assert pins(path.read_text()) == payload.requirements(), f"{path} is out of date: run `make image-requirements`"
    names = {line.split("==")[0] for line in pins(path.read_text())}
    assert "xgboost-cpu" in names and "xgboost" not in names and not any(n.startswith("nvidia-") for n in names)
    assert not {"mage-ai", "mlflow", "streamlit"} & names


def test_mlflow_image_installs_the_locked_server_and_driver() -> None:
    path = ROOT / "images" / "mlflow" / "requirements.txt"
    assert pins(path.read_text()) == payload.pinned_closure(payload.MLFLOW_SERVER_DISTRIBUTIONS), (
        f"{path} is out of date: run `make image-requirements`"
    )
    assert not {"mage-ai", "streamlit"} & {line.split("==")[0] for line in pins(path.read_text())}


def test_every_service_is_healthchecked_and_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "mlflow", "mage", "grafana", "predictor", "streamlit", *SPARK_SERVICES}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services
            assert rule == {"condition": "service_healthy"}, f"{name} -> {dependency}: {rule}"
        for port in service.get("ports", []):
            assert port.startswith("${BIND_ADDRESS:-127.0.0.1}:${"), f"{name} publishes {port} beyond 127.0.0.1"
        for volume in service.get("volumes", []):
            source = mount_source(volume)
            if not source.startswith("."):
                assert source in compose["volumes"], f"{name} mounts undeclared volume {source}"
    assert services["postgres"]["healthcheck"]["test"][1].startswith("pg_isready")


def test_built_and_mounted_paths_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = (ROOT / build["context"]).resolve()
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
            for source in copy_sources(dockerfile):
                assert (context / source).exists(), f"{name}: {dockerfile} copies {source}, not in {context}"
                if context == ROOT:
                    assert_not_dockerignored(source)
        for volume in service.get("volumes", []):
            source = mount_source(volume)
            if source.startswith("."):
                relative = Path(source).as_posix().removeprefix("./")
                assert (ROOT / relative).exists(), f"{name} mounts {source}, not in the project"


def copy_sources(dockerfile: Path) -> list[str]:
    sources = []
    text = dockerfile.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "COPY" and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def assert_not_dockerignored(source: str) -> None:
    """.dockerignore lets through only the folders it re-includes (`*` then `!folder/`)."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    included = [line[1:].rstrip("/") for line in lines if line.startswith("!")]
    assert source.split("/")[0] in included, f"{source} is excluded from the build context by .dockerignore"


def test_services_run_what_exists(compose: dict[str, Any]) -> None:
    # Mage: the entrypoint runs modules of ours that exist and accept the argument, then the Mage project
    entrypoint = (ROOT / "images" / "mage" / "entrypoint.sh").read_text()
    commands = re.findall(r"^python -m (mlops\.core\.[a-z_.]+) ([a-z-]+)$", entrypoint, flags=re.MULTILINE)
    assert commands, "the Mage entrypoint bootstraps nothing"
    for module, argument in commands:
        source = ROOT / (module.replace(".", "/") + ".py")
        assert source.is_file() and "__main__" in source.read_text(), f"{module} cannot be run with -m"
        assert f'["{argument}"]' in source.read_text(), f"{module} does not take {argument!r}"
    assert (
        "exec python -m mlops.core.platform.mage_launcher start mlops" in entrypoint
        and (ROOT / "mlops" / "metadata.yaml").is_file()
    )
    assert (ROOT / "images" / "mage" / "entrypoint.sh").stat().st_mode & 0o111
    assert "mlops-mage-entrypoint" in (ROOT / "images" / "mage" / "Dockerfile").read_text()
    # Streamlit: the script it runs
    cmd = (ROOT / "images" / "streamlit" / "Dockerfile").read_text()
    script = re.search(r'"streamlit", "run", "([^"]+)"', cmd)
    assert script and (ROOT / script.group(1)).is_file(), f"the Streamlit image runs {script}, which does not exist"
    # PostgreSQL: the init script is executable and reads only variables the service is given
    init = ROOT / "images" / "postgres" / "init" / "10-mlops-databases.sh"
    assert init.stat().st_mode & 0o111
    given = set(service_env(compose["services"]["postgres"]))
    read = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", init.read_text()))
    assert read <= given, f"the init script reads {read - given}, which compose does not pass"
    # Grafana: the provisioning folders it mounts
    for volume in compose["services"]["grafana"]["volumes"]:
        if volume.startswith("./grafana"):
            assert (ROOT / volume.split(":")[0]).is_dir()


def test_the_spark_profile_is_a_cluster_mage_can_drive(compose: dict[str, Any]) -> None:
    """The spark profile's master and workers run the mage image (the driver's Python, packages and code), see the
    tables where Mage does, are reachable by their service names and publish nothing."""
    services_ = compose["services"]
    mage = services_["mage"]
    assert "profiles" not in mage
    mage_env = service_env(mage)
    assert mage_env["MLOPS_COMPUTE__SPARK_MASTER"] == SPARK_MASTER and mage_env["SPARK_LOCAL_HOSTNAME"] == "mage"
    work_volume = next(v for v in mage["volumes"] if v.startswith("mlops_work:"))
    master, *workers = SPARK_SERVICES
    for name in SPARK_SERVICES:
        service = services_[name]
        assert service["profiles"] == ["spark"], name
        assert service["build"] == mage["build"], f"{name} does not run the mage image"
        assert work_volume in service["volumes"], f"{name} does not see Mage's work dir at its path"
        assert "ports" not in service, f"{name} publishes a port (standalone Spark has no authentication)"
        assert service_env(service)["SPARK_LOCAL_HOSTNAME"] == name
        assert service["entrypoint"][0] == "spark-class"
    assert services_[master]["entrypoint"][1] == "org.apache.spark.deploy.master.Master"
    host, port = SPARK_MASTER.removeprefix("spark://").split(":")
    assert services_[master]["command"][:4] == ["--host", host, "--port", port] and host == master
    for name in workers:
        assert services_[name]["entrypoint"][1] == "org.apache.spark.deploy.worker.Worker"
        assert services_[name]["command"][-1] == SPARK_MASTER
        assert services_[name]["depends_on"] == {master: {"condition": "service_healthy"}}
    offline = yaml.safe_load((ROOT / "images" / "compose.offline-build.yml").read_text())["services"]
    assert {name for name, service in services_.items() if "build" in service} == set(offline)
    dockerfile = (ROOT / "images" / "mage" / "Dockerfile").read_text()
    assert "openjdk-17-jre-headless" in dockerfile and "PYTHONPATH=/home/src" in dockerfile


def test_predictor_service_reads_the_payload_deploy_writes(compose: dict[str, Any]) -> None:
    """The predictor image holds the code; the model comes from the volume the Mage container's deploy writes."""
    services_ = compose["services"]
    predictor, mage = services_["predictor"], services_["mage"]
    assert predictor["build"]["dockerfile"] == "images/predictor/Dockerfile"
    env = service_env(predictor)
    mounts = {v.split(":")[1]: v.split(":")[0] for v in predictor["volumes"]}
    assert mounts[env["MLOPS_SERVING__PAYLOAD_DIR"]] == "predictor_payload"
    assert predictor["volumes"][0].endswith(":ro")
    mage_mounts = {v.split(":")[0]: v.split(":")[1] for v in mage["volumes"]}
    mage_settings = config.load(environ={"MLOPS_ROOT": str(ROOT)})  # the image's root is /home/src
    expected = Path("/home/src") / payload.payload_dir(mage_settings).relative_to(ROOT)
    assert Path(mage_mounts["predictor_payload"]) == expected
    assert "/app/.mlops" in mounts, "the prediction spool must survive a container restart"


def test_compose_env_generates_every_secret_and_keeps_existing_ones(tmp_path: Path) -> None:
    env_file = compose_env.ensure(tmp_path / ".env")
    values = compose_env.read(env_file)
    secrets_ = {k: v for k, v in values.items() if SECRET_NAME.search(k)}
    assert secrets_ and all(len(v) == 48 for v in secrets_.values())
    assert env_file.stat().st_mode & 0o077 == 0, "the .env file must be readable by its owner only"
    kept = env_file.read_text().replace(f"MAGE_OWNER_PASSWORD={values['MAGE_OWNER_PASSWORD']}", "MAGE_OWNER_PASSWORD=")
    env_file.write_text(kept.replace(f"POSTGRES_PASSWORD={values['POSTGRES_PASSWORD']}", "POSTGRES_PASSWORD=mine"))
    again = compose_env.read(compose_env.ensure(env_file))
    assert (
        again["POSTGRES_PASSWORD"] == "mine"
        and again["MLOPS_SECRETS__RETRAIN_TOKEN"] == values["MLOPS_SECRETS__RETRAIN_TOKEN"]
    )
    assert again["MAGE_OWNER_PASSWORD"] not in ("", values["MAGE_OWNER_PASSWORD"])


def test_every_variable_is_documented_and_no_secret_is_committed(
    compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    used = {m.group(1) for m in VARIABLE.finditer(COMPOSE.read_text())}
    assert used <= set(env_example), f"not in .env.example: {sorted(used - set(env_example))}"
    assert set(env_example) <= used, f".env.example documents unused variables: {sorted(set(env_example) - used)}"
    for match in VARIABLE.finditer(COMPOSE.read_text()):
        name, operator, default = match.groups()
        if SECRET_NAME.search(name):
            assert operator == ":?", f"secret {name} must be required (${{{name}:?...}}), not defaulted"
        elif operator in (":-", "-"):
            assert env_example[name] == default, f"{name}: .env.example says {env_example[name]}, compose {default}"
    for name, value in env_example.items():
        if SECRET_NAME.search(name):
            assert value == "", f".env.example gives secret {name} a value"
    for name, service in compose["services"].items():
        for key, value in service_env(service).items():
            if SECRET_NAME.search(key):
                assert VARIABLE.fullmatch(value), f"{name}.{key} is not taken from the environment"
    assert not (ROOT / ".env").exists() or ".env" in (ROOT / ".gitignore").read_text().split()


def test_platform_services_get_a_valid_configuration(compose: dict[str, Any], env_example: dict[str, str]) -> None:
    """Every MLOPS_* variable a service is given is a configuration key, and the stores point at the services."""
    filled = {k: v or "placeholder" for k, v in env_example.items()}
    for name in ("mage", "predictor", "streamlit"):
        env = {k: interpolate(v, filled) for k, v in service_env(compose["services"][name]).items()}
        settings = config.load(environ={**env, "MLOPS_ROOT": str(ROOT)})
        assert settings.tracking_uri == "http://mlflow:5000"
        assert settings.monitoring_db.startswith("postgresql+psycopg2://mlops:placeholder@postgres:5432/monitoring")
        expected = {  # each service has the tokens it uses, no other (SECRETS_PER_SERVICE)
            "mage": ("placeholder", "placeholder"),
            "predictor": ("placeholder", None),
            "streamlit": (None, None),
        }[name]
        assert (settings.secrets.reload_token, settings.secrets.retrain_token) == expected
        assert settings.serving.url == "http://predictor:8080"
    assert config.load(environ={"MLOPS_ROOT": str(ROOT)}).serving.port == 8080  # the port the compose predictor uses


@pytest.mark.postgres
def test_postgres_init_script_creates_the_stores_and_a_read_only_role(postgres_server: str) -> None:
    """The compose init script, run for real (twice: it is idempotent) against a real PostgreSQL server."""
    server = sa.make_url(store.normalise_url(postgres_server))
    suffix = uuid.uuid4().hex[:8]
    names = {
        "MLFLOW_DB": f"init_mlflow_{suffix}",
        "MAGE_DB": f"init_mage_{suffix}",
        "MONITORING_DB": f"init_monitoring_{suffix}",
        "GRAFANA_DB_USER": f"init_reader_{suffix}",
        "GRAFANA_DB_PASSWORD": secrets.token_hex(12),
    }
    env = {
        **os.environ,
        **names,
        "POSTGRES_USER": str(server.username),
        "PGHOST": str(server.host or server.query["host"]),
        "PGPORT": str(server.port or 5432),
        "PGPASSWORD": server.password or "",
    }
    script = ROOT / "images" / "postgres" / "init" / "10-mlops-databases.sh"
    try:
        for _ in range(2):
            result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stdout + result.stderr
        for key in ("MLFLOW_DB", "MAGE_DB", "MONITORING_DB"):
            assert services.database_exists(postgres_server, names[key])
        monitoring = server.set(database=names["MONITORING_DB"]).render_as_string(hide_password=False)
        store.migrate(monitoring)  # the tables come later, created by the platform as the owner
        reader = sa.create_engine(
            server.set(
                username=names["GRAFANA_DB_USER"],
                password=names["GRAFANA_DB_PASSWORD"],
                database=names["MONITORING_DB"],
            )
        )
        try:
            with reader.connect() as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM monitoring.predictions")).scalar() == 0
                with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                    conn.execute(sa.text("DELETE FROM monitoring.alerts"))
        finally:
            reader.dispose()
    finally:
        for key in ("MLFLOW_DB", "MAGE_DB", "MONITORING_DB"):
            services.drop_database(postgres_server, names[key])
        admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{names["GRAFANA_DB_USER"]}"'))
        admin.dispose()


# Which secrets each service is given, and why (docs/reliability.md, "Secrets per service"): any other is refused.
SECRETS_PER_SERVICE = {
    "grafana": {"GRAFANA_ADMIN_PASSWORD", "GRAFANA_DB_PASSWORD", "MLOPS_SECRETS__RETRAIN_TOKEN"},
    "mage": {
        "POSTGRES_PASSWORD",  # its own database and the monitoring database
        "MAGE_OWNER_PASSWORD",
        "MLOPS_SECRETS__RELOAD_TOKEN",  # deploy reloads the predictor
        "MLOPS_SECRETS__RETRAIN_TOKEN",  # the bootstrap pins the retrain trigger's token
    },
    "mlflow": {"POSTGRES_PASSWORD"},
    "postgres": {"POSTGRES_PASSWORD", "GRAFANA_DB_PASSWORD"},  # creates the reader role Grafana uses
    "predictor": {"POSTGRES_PASSWORD", "MLOPS_SECRETS__RELOAD_TOKEN"},  # the prediction log; checks /reload
    "streamlit": {"POSTGRES_PASSWORD"},  # reads the monitoring database
}


def test_each_service_is_given_only_the_secrets_it_uses(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        given = {
            m.group(1)
            for value in service_env(service).values()
            for m in VARIABLE.finditer(value)
            if SECRET_NAME.search(m.group(1))
        }
        assert given == SECRETS_PER_SERVICE.get(name, set()), f"{name} is given {sorted(given)}"
