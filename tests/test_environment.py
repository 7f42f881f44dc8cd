"""The pinned environment: versions the platform was proven with, and an idempotent `make setup`."""

import subprocess
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pinned_versions() -> None:
    assert version("mage-ai") == "0.9.80"
    assert version("mlflow").startswith("3.17.")
    assert version("evidently").startswith("0.7.")
    assert version("scikit-learn") == "1.7.2"
    assert int(version("pandas").split(".")[0]) < 3
    assert version("flask").startswith("3.0")
    assert version("click").startswith("8.1.")  # click 8.2 breaks Mage's typer CLI


def test_conflicting_libraries_import_together() -> None:
    import evidently  # noqa: F401
    import flask  # noqa: F401
    import mage_ai  # noqa: F401
    import mlflow.server  # noqa: F401
    import streamlit  # noqa: F401


def test_second_setup_is_a_no_op() -> None:
    result = subprocess.run(["make", "-q", "setup"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, "make setup would do work although nothing changed"
