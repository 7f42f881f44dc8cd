"""`mage run mlops deploy` and `mage run mlops test` headless, with a real predictor started by deploy."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import requests
import sqlalchemy as sa

from mlops.core import config, services
from mlops.core.lifecycle import deploy, promotion
from mlops.core.monitoring import store
from mlops.core.training import registry
from tests.conftest import ROOT


def mage(
    pipeline: str, env: dict[str, str], variables: dict[str, object] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [shutil.which("mage", path=str(Path(sys.executable).parent)) or "mage", "run", "mlops", pipeline]
    if variables:
        command += ["--runtime-vars", json.dumps(variables)]
    return subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def predictor_env(
    trained: object, settings: config.Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Where deploy writes the payload and starts the predictor (a free port, a token for this module)."""
    folder = tmp_path_factory.mktemp("predictor")
    port = services.free_port()
    env = {
        "MLOPS_SERVING__PORT": str(port),
        "MLOPS_SERVING__URL": f"http://127.0.0.1:{port}",
        "MLOPS_SERVING__PAYLOAD_DIR": str(folder / "payload"),
        "MLOPS_SERVING__SPOOL_DIR": str(folder / "spool"),
        "MLOPS_SECRETS__RELOAD_TOKEN": secrets.token_urlsafe(24),
    }
    pid_file = deploy.run_dir(settings) / "predictor.pid"
    pid_file.unlink(missing_ok=True)
    yield env
    if pid_file.is_file():
        services.stop_group(int(pid_file.read_text()))


@pytest.fixture(scope="module")
def deployed(predictor_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return mage("deploy", predictor_env, {"holdout": ["test"]})


def module_settings(env: dict[str, str]) -> config.Settings:
    return config.load(environ={**os.environ, **env})


def test_deploy_through_mage_promotes_and_starts_the_predictor(
    deployed: subprocess.CompletedProcess[str], predictor_env: dict[str, str]
) -> None:
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    assert "Pipeline run completed" in deployed.stdout
    assert "deploy decision: promoted" in deployed.stdout and "started the predictor" in deployed.stdout
    s = module_settings(predictor_env)
    client = registry.configure(s)
    champion = registry.version_by_alias(client, s.training.model_name, registry.CHAMPION)
    challenger = registry.version_by_alias(client, s.training.model_name, registry.CHALLENGER)
    assert champion is not None and challenger is not None and champion.version == challenger.version
    served = requests.get(f"{s.serving.url}/model", timeout=10).json()
    assert served["version"] == str(champion.version) and served["alias"] == registry.CHAMPION
    last = promotion.events(s)[-1]
    assert (last["action"], last["version"], last["alias"]) == ("promoted", str(champion.version), "champion")


def test_deploying_again_changes_nothing(
    deployed: subprocess.CompletedProcess[str], predictor_env: dict[str, str]
) -> None:
    s = module_settings(predictor_env)
    before = len(promotion.events(s))
    decision = promotion.promote_if_better(s)
    assert decision.action == "unchanged" and "already the champion" in decision.reason
    assert deploy.payload_for_champion(s)[1] is False
    assert "already serves version" in deploy.switch_predictor(s)
    assert len(promotion.events(s)) == before


def test_the_test_pipeline_scores_through_the_predictor_and_records_metrics(
    deployed: subprocess.CompletedProcess[str], predictor_env: dict[str, str]
) -> None:
    result = mage("test", predictor_env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    s = module_settings(predictor_env)
    client = registry.configure(s)
    champion = registry.version_by_alias(client, s.training.model_name, registry.CHAMPION)
    assert champion is not None
    version = str(champion.version)

    eng = store.engine(s.monitoring_db)
    table = store.evaluations
    with eng.connect() as conn:
        rows = conn.execute(sa.select(table).where(table.c.model_version == version)).mappings().all()
    eng.dispose()
    by_part = {r["dataset"]: r for r in rows if r["source"] == "test_pipeline"}
    assert set(by_part) == {"test", "summer", "fall"}
    assert by_part["test"]["rows"] == 4289 and by_part["summer"]["rows"] == 18483
    for row in by_part.values():
        assert 0.55 < row["roc_auc"] < 1 and 0 < row["pr_auc"] < 1 and 0 < row["f1"] < 1 and row["lift"] > 1
    # served over HTTP, the test split scores as the registered model did in-process at training
    assert by_part["test"]["roc_auc"] == pytest.approx(float(champion.tags["test_roc_auc"]), abs=1e-5)

    run = mlflow.get_run(client.get_model_version(s.training.model_name, version).tags["test_run_id"])
    assert run.data.tags["model_version"] == version and run.data.tags["model_name"] == s.training.model_name
    for part in ("test", "summer", "fall"):
        for metric in ("roc_auc", "pr_auc", "f1", "lift_at_10"):
            assert run.data.metrics[f"{part}_{metric}"] == pytest.approx(by_part[part][metric.split("_at_")[0]])
