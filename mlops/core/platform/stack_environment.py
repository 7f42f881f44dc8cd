"""Each native stack service's environment: what every service needs to find the others, and only the secrets
:data:`SERVICE_SECRETS` gives it (:func:`confine`).
"""

from __future__ import annotations

import os

from mlops.core import services
from mlops.core.config import Settings

# The secrets each service's environment holds; every other variable holding a secret (by name, or a URL with a
# password) is left out of it. docs/reliability.md ("Secrets per service") says why each needs each.
DB_URL = "MLOPS_STORES__MONITORING_DB"  # the monitoring database: with PostgreSQL its URL holds the password
SERVICE_SECRETS: dict[str, frozenset[str]] = {
    "postgres": frozenset(),  # its password was set once by initdb, from a file deleted at once
    "mlflow": frozenset({"MLFLOW_BACKEND_STORE_URI"}),
    "mage": frozenset(
        {
            "MAGE_DATABASE_CONNECTION_URL",  # Mage's own database
            "DEFAULT_OWNER_PASSWORD",  # Mage creates its owner login with it on the first start
            DB_URL,  # the monitor and retrain pipelines write the monitoring database
            "MLOPS_SECRETS__RELOAD_TOKEN",  # deploy asks the predictor to reload
        }
    ),
    "predictor": frozenset({DB_URL, "MLOPS_SECRETS__RELOAD_TOKEN"}),  # it logs predictions; /reload checks it
    "streamlit": frozenset({DB_URL}),  # the monitoring page reads it
    "grafana": frozenset(
        {
            "GF_SECURITY_ADMIN_PASSWORD",
            "GRAFANA_DB_PASSWORD",  # its datasource
            "MLOPS_SECRETS__RETRAIN_TOKEN",  # its contact point calls the retrain trigger
        }
    ),
    "supervisor": frozenset(),  # it reads each service's environment from state.json
}


def service_environment(settings: Settings, urls: dict[str, str], keys: dict[str, str]) -> dict[str, str]:
    """What every service (and a shell that sources stack.env) needs to find the others."""
    env = {
        "MLOPS_STORES__TRACKING_URI": f"http://127.0.0.1:{settings.stack.mlflow_port}",
        "MLOPS_STORES__MONITORING_DB": urls["monitoring"],
        "MLOPS_SECRETS__RELOAD_TOKEN": keys["MLOPS_SECRETS__RELOAD_TOKEN"],
        "MLOPS_SECRETS__RETRAIN_TOKEN": keys["MLOPS_SECRETS__RETRAIN_TOKEN"],
        "MLOPS_SECRETS__MAGE_OWNER_PASSWORD": keys["MLOPS_SECRETS__MAGE_OWNER_PASSWORD"],
        # the stack runs the predictor itself: deploy reloads it, never starts a second one
        "MLOPS_DEPLOY__START_PREDICTOR": "false",
        "MAGE_DATA_DIR": os.environ.get("MAGE_DATA_DIR", str(settings.work_dir / "mage_data")),
    }
    return env


def confine(proc: services.ManagedProcess) -> services.ManagedProcess:
    """``proc`` with only the secrets :data:`SERVICE_SECRETS` gives it: none inherited from this process."""
    allowed = SERVICE_SECRETS[proc.name]
    proc.env = {k: v for k, v in proc.env.items() if k in allowed or not services.is_secret(k, v)}
    proc.inherit_secrets = False
    return proc
