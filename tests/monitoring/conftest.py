"""Fixtures of the monitoring tests: a champion, settings on a fresh monitoring database, Grafana's files."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.core import config

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
WEBHOOKS = ROOT.parent / "shared" / "grafana"


@pytest.fixture(scope="module")
def fresh_settings(
    platform_env: dict[str, str], make_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> config.Settings:
    """The platform's settings with a monitoring database and report folder of this module alone."""
    reports = tmp_path_factory.mktemp("evidently")
    env = {
        **os.environ,
        "MLOPS_STORES__MONITORING_DB": make_database("monitor"),
        "MLOPS_MONITORING__REPORTS_DIR": str(reports),
    }
    return config.load(environ=env)


def load_provisioning(relative: str) -> dict[str, Any]:
    path = GRAFANA / relative
    return json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())


def webhook(name: str) -> dict[str, Any]:
    path = WEBHOOKS / name
    if not path.is_file():
        pytest.fail(f"Grafana's webhook sample {path} is missing")
    return json.loads(path.read_text())
