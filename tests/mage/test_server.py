"""The Mage server starts from the pinned environment on PostgreSQL and serves the project's pipelines."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from mlops.core import config, services
from mlops.core.platform import orchestration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mage_server(make_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("mage_server")
    url = f"http://127.0.0.1:{services.free_port()}"
    settings = config.load(
        environ={
            **os.environ,
            "MLOPS_ORCHESTRATION__MAGE_URL": url,
            "MLOPS_SECRETS__MAGE_OWNER_PASSWORD": "owner-password-for-this-test",
        }
    )
    proc = orchestration.mage_server(settings, make_database("mage"), folder / "mage.log")
    proc.env["MAGE_DATA_DIR"] = str(folder / "data")
    proc.start()
    try:
        services.wait_http(f"{url}/api/status", proc, timeout=240)
        yield url
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
