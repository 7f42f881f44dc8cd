"""The native stack's service processes that ``services`` does not define: MLflow with its backend URL kept off
the command line, Streamlit, Grafana with the project's provisioning, and the stack's supervisor.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import sqlalchemy as sa

from mlops.core import services
from mlops.core.config import Settings
from mlops.core.platform.local_postgres import DATABASES


def grafana_binary() -> str | None:
    return shutil.which("grafana") or shutil.which("grafana-server")


def mlflow_process(settings: Settings, run: Path, urls: dict[str, str], env: dict[str, str]) -> services.ManagedProcess:
    proc = services.mlflow_server(
        urls["mlflow"], run / "mlflow-artifacts", settings.stack.mlflow_port, run / "logs" / "mlflow.log"
    )
    proc.env.update(env)
    # The backend URL holds the database password: hand it over in the environment, not on the command line
    # where `ps` shows it to every user (the server reads MLFLOW_BACKEND_STORE_URI for the same option).
    at = proc.command.index("--backend-store-uri")
    proc.env["MLFLOW_BACKEND_STORE_URI"] = proc.command[at + 1]
    del proc.command[at : at + 2]
    return proc


def streamlit_process(settings: Settings, run: Path, env: dict[str, str]) -> services.ManagedProcess:
    command = [str(services.VENV_BIN / "streamlit"), "run", str(app_entry(settings))]
    command += ["--server.address", "127.0.0.1", "--server.port", str(settings.stack.streamlit_port)]
    command += ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
    return services.ManagedProcess("streamlit", command, run / "logs" / "streamlit.log", env=env, cwd=settings.root)


def app_entry(settings: Settings) -> Path:
    return settings.root / "mlops" / "app" / "Home.py"


def grafana_process(
    settings: Settings, run: Path, env: dict[str, str], server_url: str, keys: dict[str, str]
) -> services.ManagedProcess:
    """Grafana with the project's provisioning, pointed at this stack's monitoring database and Mage."""
    binary = grafana_binary()
    assert binary is not None
    real = Path(binary).resolve()
    # package installs keep the static files in /usr/share/grafana; a tarball beside bin/
    home = next(
        (p for p in (Path("/usr/share/grafana"), real.parents[1]) if (p / "conf" / "defaults.ini").is_file()),
        real.parents[1],
    )
    db = sa.make_url(server_url)
    grafana_env = {
        **env,
        "GF_PATHS_PROVISIONING": str(settings.root / "grafana" / "provisioning"),
        "GF_PATHS_DATA": str(run / "grafana"),
        "GF_PATHS_LOGS": str(run / "logs"),
        "GF_SERVER_HTTP_ADDR": "127.0.0.1",
        "GF_SERVER_HTTP_PORT": str(settings.stack.grafana_port),
        "GF_SECURITY_ADMIN_USER": "admin",
        "GF_SECURITY_ADMIN_PASSWORD": keys["GRAFANA_ADMIN_PASSWORD"],
        "GF_ANALYTICS_REPORTING_ENABLED": "false",
        # the same variables docker-compose.yml gives the provisioning files
        "MONITORING_DB_HOST": f"{db.host}:{db.port}",
        "MONITORING_DB": DATABASES["monitoring"],
        "GRAFANA_DB_USER": str(db.username),
        "GRAFANA_DB_PASSWORD": str(db.password),
        "MAGE_URL": settings.orchestration.mage_url,
    }
    command = (
        [binary, "server", "--homepath", str(home)] if real.name == "grafana" else [binary, "--homepath", str(home)]
    )
    return services.ManagedProcess("grafana", command, run / "logs" / "grafana.log", env=grafana_env)


def supervisor_process(settings: Settings, run: Path) -> services.ManagedProcess:
    """The stack's supervisor (mlops.core.platform.stack_supervisor), on this run folder."""
    command = [sys.executable, "-m", "mlops.core.platform.stack_supervisor", str(run)]
    return services.ManagedProcess("supervisor", command, run / "logs" / "supervisor.log", cwd=settings.root)
