"""The Mage server starts from the pinned environment on PostgreSQL and serves the project's pipelines."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from mlops.core import services

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mage_server(make_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("mage_server")
    port = services.free_port()
    env = {
        "MAGE_DATA_DIR": str(folder / "data"),
        "MAGE_DATABASE_CONNECTION_URL": make_database("mage"),
        "REQUIRE_USER_AUTHENTICATION": "0",
    }
    proc = services.ManagedProcess(
        "mage",
        [str(services.VENV_BIN / "mage"), "start", "mlops", "--host", "127.0.0.1", "--port", str(port)],
        folder / "mage.log",
        env=env,
        cwd=ROOT,
    ).start()
    try:
        services.wait_http(f"http://127.0.0.1:{port}/api/status", proc, timeout=240)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()
        assert not proc.alive()
    assert os.path.exists(folder / "mage.log")


def test_mage_server_runs_the_project_with_its_scheduler(mage_server: str) -> None:
    status = requests.get(f"{mage_server}/api/status", timeout=30).json()["statuses"][0]
    assert Path(status["repo_path"]) == ROOT / "mlops"
    assert status["scheduler_status"] == "running"
    project = yaml.safe_load((ROOT / "mlops" / "metadata.yaml").read_text())
    assert status["project_uuid"] == project["project_uuid"]
