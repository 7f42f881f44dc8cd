"""The ports the native stack's services listen on, checked free (and distinct) before ``up`` starts anything."""

from __future__ import annotations

from urllib.parse import urlsplit

from mlops.core import services
from mlops.core.config import Settings
from mlops.core.platform.stack_errors import PortTaken
from mlops.core.platform.stack_processes import grafana_binary


def mage_port(settings: Settings) -> int:
    return urlsplit(settings.orchestration.mage_url).port or 6789


def planned_ports(settings: Settings, database: str) -> dict[str, tuple[int, str]]:
    """Service -> (port, the configuration key that sets it)."""
    ports = {
        "mlflow": (settings.stack.mlflow_port, "MLOPS_STACK__MLFLOW_PORT"),
        "mage": (mage_port(settings), "MLOPS_ORCHESTRATION__MAGE_URL"),
        "predictor": (settings.serving.port, "MLOPS_SERVING__PORT (and MLOPS_SERVING__URL)"),
        "streamlit": (settings.stack.streamlit_port, "MLOPS_STACK__STREAMLIT_PORT"),
    }
    if database == "postgres":
        ports["postgres"] = (settings.stack.postgres_port, "MLOPS_STACK__POSTGRES_PORT")
    if grafana_binary() and database != "sqlite":
        ports["grafana"] = (settings.stack.grafana_port, "MLOPS_STACK__GRAFANA_PORT")
    return ports


def check_ports(ports: dict[str, tuple[int, str]]) -> None:
    taken = [
        f"port {port} ({name}) is in use: stop what listens there or set {key}"
        for name, (port, key) in ports.items()
        if services.port_in_use(port)
    ]
    seen: dict[int, str] = {}
    for name, (port, key) in ports.items():
        if port in seen:
            taken.append(f"port {port} is configured for both {seen[port]} and {name}: change {key}")
        seen[port] = name
    if taken:
        raise PortTaken("refusing to start:\n  " + "\n  ".join(taken))
