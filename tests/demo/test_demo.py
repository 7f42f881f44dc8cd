"""`python -m mlops demo` as a new user runs it (embedded stores, real Mage runs, a real predictor): the whole
loop passes, the output holds no library noise, it ends on what next, and `down` stops what it left running."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from mlops.core import services
from mlops.core.monitoring import store
from mlops.core.platform.demo import library_noise
from tests.conftest import run_cli as mlops

pytestmark = [pytest.mark.slow, pytest.mark.mage]


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory: pytest.TempPathFactory, bank_csv: Path) -> dict[str, str]:
    """The default configuration, every store and port moved to a folder of its own (no MLOPS_ of the session)."""
    work = tmp_path_factory.mktemp("demo")
    port = services.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MAGE_"))}
    return {
        **env,
        "COLUMNS": "200",
        "MLOPS_PATHS__WORK_DIR": str(work / "work"),
        "MLOPS_STORES__TRACKING_URI": f"sqlite:///{work}/mlflow.db",
        "MLOPS_STORES__ARTIFACT_LOCATION": str(work / "mlartifacts"),
        "MLOPS_STORES__MONITORING_DB": f"sqlite:///{work}/monitoring.db",
        "MLOPS_SERVING__PORT": str(port),
        "MLOPS_SERVING__URL": f"http://127.0.0.1:{port}",
        "MLOPS_SERVING__PAYLOAD_DIR": str(work / "payload"),
        "MLOPS_SERVING__SPOOL_DIR": str(work / "spool"),
        "MLOPS_DATASET__SOURCE__PATH": str(bank_csv),
    }


@pytest.fixture(scope="module")
def demo(demo_env: dict[str, str]) -> Iterator[subprocess.CompletedProcess[str]]:
    result = mlops("demo", env=demo_env, timeout=900)  # the whole loop takes minutes
    try:
        yield result
    finally:
        mlops("down", env=demo_env, timeout=120)


def test_the_demo_runs_the_whole_loop_and_the_gain_shows(demo: subprocess.CompletedProcess[str], demo_env) -> None:  # type: ignore[no-untyped-def]
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    reports = Path(demo_env["MLOPS_PATHS__WORK_DIR"]) / "reports" / "bank-marketing"
    report = json.loads((reports / "demo.json").read_text())
    assert report["ok"] is True
    assert list(report["stages"]) == [
        "data",
        "prepare",
        "train",
        "deploy",
        "test",
        "monitor summer",
        "monitor fall",
        "retrain (alert firing)",
        "test (alert firing)",
    ]
    assert report["alert_fired"] is True
    assert (report["champion_before"], report["champion_after"]) == ("1", "2")  # retrain deployed a better model
    holdout = {row["batch"]: row for row in report["quality_before_after"]}["summer.holdout"]
    assert holdout["after"] > holdout["before"]
    assert "search budget per tuned family 6 s or 6 trials (demo.search" in demo.stdout


def test_the_demo_prints_no_library_noise(demo: subprocess.CompletedProcess[str]) -> None:
    assert library_noise(demo.stdout + demo.stderr) == []
    assert "Message signing is disabled" not in demo.stdout + demo.stderr


def test_the_demo_ends_on_what_next_and_down_stops_its_predictor(
    demo: subprocess.CompletedProcess[str], demo_env: dict[str, str]
) -> None:
    tail = demo.stdout[demo.stdout.index("what next") :]
    url = demo_env["MLOPS_SERVING__URL"]
    assert f"still running: the predictor at {url}" in tail
    assert "-m mlops down" in tail and "MLOPS_STACK__DATABASE=sqlite" in tail and "MLOPS_CONFIG=" in tail
    assert requests.get(f"{url}/model", timeout=10).json()["version"] == "2"

    status = mlops("status", env=demo_env, timeout=120)
    assert status.returncode == 0 and "started by deploy" in status.stdout, status.stdout + status.stderr
    down = mlops("down", env=demo_env, timeout=120)
    assert down.returncode == 0 and "predictor started by deploy" in down.stdout, down.stdout + down.stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/health", timeout=5)
    assert mlops("status", env=demo_env, timeout=120).returncode == 1


def test_after_retrain_the_test_pipeline_reports_only_rows_the_model_never_saw(
    demo: subprocess.CompletedProcess[str], demo_env: dict[str, str]
) -> None:
    """v2 learnt from most of summer: its test reports summer's held-out part, not the whole batch (#12, 13)."""
    assert demo.returncode == 0
    table = store.evaluations
    eng = store.engine(demo_env["MLOPS_STORES__MONITORING_DB"])
    try:
        with eng.connect() as conn:
            rows = conn.execute(sa.select(table.c.model_version, table.c.dataset)).all()
    finally:
        eng.dispose()
    tested = {version: sorted(d for v, d in rows if v == version) for version, _ in rows}
    assert tested["1"] == ["fall", "summer", "test"]
    assert tested["2"] == ["fall", "summer.holdout", "test"]
