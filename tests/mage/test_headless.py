"""`mage run` of prepare and train: success on the real data, a non-zero exit on a broken input file."""

import subprocess
from pathlib import Path

import pandas as pd

from mlops.core import config
from tests.conftest import mage_run


def test_prepare_and_train_succeed_through_mage(
    prepared: subprocess.CompletedProcess[str], trained: subprocess.CompletedProcess[str], settings: config.Settings
) -> None:
    assert "Pipeline run completed" in prepared.stdout
    assert "duration" in prepared.stdout and "leakage check" in prepared.stdout
    assert "Pipeline run completed" in trained.stdout
    assert "ranked by validation roc_auc" in trained.stdout
    assert (settings.reports_dir / "leaderboard.json").is_file()


def test_a_broken_input_file_fails_the_pipeline(settings: config.Settings, bank_csv: Path, tmp_path: Path) -> None:
    broken = pd.read_csv(bank_csv, dtype=str, nrows=300).drop(columns=["balance"])
    broken.loc[:9, "y"] = "perhaps"
    path = tmp_path / "broken.csv"
    broken.to_csv(path, index=False)
    result = mage_run(
        "prepare", env={"MLOPS_DATASET__SOURCE__PATH": str(path), "MLOPS_PATHS__WORK_DIR": str(tmp_path / "work")}
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "balance: required column is missing" in output
    assert "y: label not in ['no', 'yes'] (10 bad rows)" in output
    assert not (tmp_path / "work" / "datasets").exists(), "nothing is persisted from a bad file"
