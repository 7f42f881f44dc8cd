"""The Mage server starts from the pinned environment on PostgreSQL and serves the project's pipelines."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from mlops.core import config, services
from mlops.core.platform import orchestration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mage_database(make_database) -> str:  # type: ignore[no-untyped-def]
    return str(make_database("mage"))


@pytest.fixture(scope="module")
def mage_server(mage_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("mage_server")
    url = f"http://127.0.0.1:{services.free_port()}"
    settings = config.load(
        environ={
            **os.environ,
            "MLOPS_ORCHESTRATION__MAGE_URL": url,
            "MLOPS_SECRETS__MAGE_OWNER_PASSWORD": "owner-password-for-this-test",
        }
    )
    proc = orchestration.mage_server(settings, mage_database, folder / "mage.log")
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


def block_runs_after_race(mode: str, database: str, runs: int) -> list[int]:
    env = {**os.environ, orchestration.DATABASE_ENV: database, "MAGE_REPO_PATH": str(ROOT / "mlops")}
    done = subprocess.run(
        [sys.executable, "-m", "tests.mage.block_run_race", mode, str(runs)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return list(json.loads(done.stdout.splitlines()[-1]))


def test_a_run_gets_one_set_of_block_runs_when_its_creator_and_the_scheduler_race(
    mage_server: str, mage_database: str
) -> None:
    """Retrain's block creates the deploy run while Mage's scheduler starts it: unpatched, both create the
    run's block runs (the run then waits for ever on the second set); patched, exactly one set."""
    deploy_blocks = len(yaml.safe_load((ROOT / "mlops/pipelines/deploy/metadata.yaml").read_text())["blocks"])
    assert block_runs_after_race("patched", mage_database, runs=20) == [deploy_blocks] * 20
