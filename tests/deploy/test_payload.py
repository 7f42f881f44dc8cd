"""The predictor payload: complete layout, a model.json that validates, the same model, a clean Dockerfile."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests
from mlflow.tracking import MlflowClient

from mlops.core import config, services
from mlops.core.data import features, preparation, schema
from mlops.core.serving import payload
from mlops.core.training import registry
from tests.deploy.conftest import payload_folder

CONTRACT_KEYS = {
    "name",
    "version",
    "alias",
    "threshold",
    "metrics",
    "trained_at",
    "family",
    "run_id",
    "model_dir",
    "schema",
}


@pytest.fixture(scope="module")
def written(client: MlflowClient, scenario_settings: config.Settings, register_trained) -> tuple[Path, str]:  # type: ignore[no-untyped-def]
    version = register_trained()
    return payload.write_payload(scenario_settings, version), version


def test_the_payload_layout_is_complete(written: tuple[Path, str]) -> None:
    folder, version = written
    names = {p.name for p in folder.iterdir()}
    assert {"model.json", f"model-{version}", "Dockerfile", "requirements.txt", "gunicorn.conf.py", "app.py"} <= names
    assert {"config.yaml", "mlops"} <= names
    assert (folder / "mlops" / "__init__.py").is_file() and (
        folder / "mlops" / "core" / "lifecycle" / "deploy.py"
    ).is_file()
    assert (folder / "mlops" / "core" / "monitoring" / "migrations" / "versions" / "0001_initial.py").is_file()
    assert not (folder / "mlops" / "custom").exists() and not (folder / "mlops" / "pipelines").exists()
    assert not list(folder.rglob("__pycache__")) and not list(folder.glob(".staging-*"))
    assert (folder / f"model-{version}" / "MLmodel").is_file()
    for path in (folder / "app.py", folder / "gunicorn.conf.py"):
        compile(path.read_text(), str(path), "exec")
    assert all(p.stat().st_mode & 0o005 == 0o005 for p in folder.rglob("*") if p.is_dir()), "unreadable in the image"


def test_model_json_validates_and_matches_the_registry(
    written: tuple[Path, str], client: MlflowClient, scenario_settings: config.Settings
) -> None:
    folder, version = written
    described = json.loads((folder / "model.json").read_text())
    assert set(described) == CONTRACT_KEYS
    source = client.get_model_version(scenario_settings.training.model_name, version)
    assert described["version"] == version and described["alias"] == registry.CHAMPION
    assert described["model_dir"] == f"model-{version}" and described["run_id"] == source.tags["candidate_run_id"]
    assert described["threshold"] == pytest.approx(float(source.tags["threshold"]))
    assert described["metrics"]["validation_roc_auc"] > 0.75 and "test_pr_auc" in described["metrics"]
    loaded = schema.FeatureSchema.from_dict(described["schema"])
    assert loaded.features == scenario_settings.dataset.features


def test_the_payload_model_scores_like_the_registered_one(
    written: tuple[Path, str], scenario_settings: config.Settings
) -> None:
    folder, version = written
    test = features.normalise(preparation.load_split(scenario_settings, "test"), scenario_settings.dataset)
    from_payload = mlflow.sklearn.load_model(str(folder / f"model-{version}")).predict_proba(test)[:, 1]
    from_registry = registry.load_pipeline(scenario_settings.training.model_name, version).predict_proba(test)[:, 1]
    assert np.array_equal(from_payload, from_registry)


def test_requirements_are_pinned_from_this_environment_and_cover_serving(written: tuple[Path, str]) -> None:
    folder, _ = written
    lines = (folder / "requirements.txt").read_text().split()
    assert lines and all("==" in line for line in lines)
    pinned = dict(line.split("==") for line in lines)
    from importlib.metadata import version

    for name in ("gunicorn", "scikit-learn", "pandas", "numpy", "skops"):
        assert pinned[name] == version(name), name
    # XGBoost's CPU-only wheel: the same library and version, without CUDA kernels or NVIDIA's libraries
    assert pinned["xgboost-cpu"] == version("xgboost") and "xgboost" not in pinned
    assert not [name for name in pinned if name.startswith("nvidia-")]
    assert "mage-ai" not in pinned and "optuna" not in pinned and "streamlit" not in pinned


def test_the_dockerfile_passes_hadolint(written: tuple[Path, str]) -> None:
    folder, _ = written
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "error", str(folder / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = (folder / "Dockerfile").read_text()
    assert text.startswith("# ") and "FROM python:3.11-slim" in text and "requirements.txt" in text
    assert 'CMD ["gunicorn"' in text


def test_a_payload_without_champion_has_no_model(scenario_settings: config.Settings, tmp_path: Path) -> None:
    empty = scenario_settings.model_copy(
        update={"serving": scenario_settings.serving.model_copy(update={"payload_dir": tmp_path / "p"})}
    )
    folder = payload.write_payload(empty, None)
    assert (folder / "Dockerfile").is_file() and (folder / "app.py").is_file()
    assert not (folder / "model.json").exists() and not list(folder.glob("model-*"))


def test_rewriting_switches_model_json_and_prunes_old_model_dirs(
    written: tuple[Path, str],
    scenario_settings: config.Settings,
    register_trained,  # type: ignore[no-untyped-def]
) -> None:
    folder, _ = written
    second, third = register_trained(), register_trained()
    payload.write_payload(scenario_settings, second)
    payload.write_payload(scenario_settings, third)
    assert json.loads((folder / "model.json").read_text())["version"] == third
    # the model just replaced stays for a worker booting from the old model.json; older ones go
    assert {p.name for p in folder.glob("model-*")} == {f"model-{second}", f"model-{third}"}
    assert payload_folder(scenario_settings) == folder


def uv_command() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def test_the_payload_serves_alone_from_its_pinned_requirements(
    written: tuple[Path, str], scenario_settings: config.Settings, tmp_path: Path
) -> None:
    """What `docker build` would give, without Docker: a fresh venv with only requirements.txt, gunicorn
    started in the payload folder as the Dockerfile's CMD does, no repository on the path."""
    folder, _ = written
    version = json.loads((folder / "model.json").read_text())["version"]  # whichever an earlier test left
    venv = tmp_path / "venv"
    subprocess.run([*uv_command(), "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=300)
    install = subprocess.run(
        [*uv_command(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "-r", "requirements.txt"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    port = services.free_port()
    image_env = {
        "MLOPS_ROOT": str(folder),
        "MLOPS_CONFIG": str(folder / "config.yaml"),
        "MLOPS_SERVING__PAYLOAD_DIR": str(folder),
        "MLOPS_SERVING__PORT": str(port),
        "MLOPS_SERVING__SPOOL_DIR": str(tmp_path / "spool"),
    }
    command = [str(venv / "bin" / "gunicorn"), "--config", "gunicorn.conf.py", "app:app"]
    proc = services.ManagedProcess("payload-predictor", command, tmp_path / "predictor.log", image_env, cwd=folder)
    proc.start()
    try:
        services.wait_http(f"http://127.0.0.1:{port}/ready", proc, timeout=240)
        test = preparation.load_split(scenario_settings, "test").head(50)
        records = json.loads(test[scenario_settings.dataset.features].to_json(orient="records"))
        answer = requests.post(f"http://127.0.0.1:{port}/predict", json=records, timeout=60).json()
        served = np.array([p["probability"] for p in answer["predictions"]])
        expected = registry.load_pipeline(scenario_settings.training.model_name, version).predict_proba(
            features.normalise(test, scenario_settings.dataset)
        )[:, 1]
        assert answer["model_version"] == version
        assert np.abs(served - expected).max() < 1e-6
    finally:
        proc.stop()
