"""Raw-data validation: each kind of bad file gives a clear error naming columns and bad-row counts."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mlops.core import config
from mlops.core.data import validation
from mlops.core.data.validation import DataValidationError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset() -> config.Dataset:
    return config.load(environ={"MLOPS_ROOT": str(ROOT)}).dataset


@pytest.fixture(scope="module")
def sample(bank_csv: Path) -> pd.DataFrame:
    return validation.read_text_frame(bank_csv).head(200)


def problems(path: Path, dataset: config.Dataset) -> dict[str, str]:
    with pytest.raises(DataValidationError) as info:
        validation.read_validated(path, dataset)
    return {p.column: str(p) for p in info.value.problems}


def write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_the_real_file_is_valid_and_typed(bank_csv: Path, dataset: config.Dataset) -> None:
    frame = validation.read_validated(bank_csv, dataset)
    assert len(frame) == 45_211
    assert frame["age"].dtype == "float64"
    assert frame["job"].isna().sum() == 288  # empty cells stay missing, not filled


def test_missing_column(sample: pd.DataFrame, dataset: config.Dataset, tmp_path: Path) -> None:
    found = problems(write(sample.drop(columns=["balance"]), tmp_path / "f.csv"), dataset)
    assert found == {"balance": "balance: required column is missing"}


def test_extra_column(sample: pd.DataFrame, dataset: config.Dataset, tmp_path: Path) -> None:
    found = problems(write(sample.assign(customer_id="1"), tmp_path / "f.csv"), dataset)
    assert "customer_id" in found and "unexpected column" in found["customer_id"]


def test_wrong_types_are_counted_not_coerced(sample: pd.DataFrame, dataset: config.Dataset, tmp_path: Path) -> None:
    bad = sample.copy()
    bad.loc[:6, "age"] = "forty"
    bad.loc[:1, "campaign"] = "inf"
    found = problems(write(bad, tmp_path / "f.csv"), dataset)
    assert found["age"] == "age: not a finite number (7 bad rows)"
    assert found["campaign"] == "campaign: not a finite number (2 bad rows)"


def test_missing_numbers_are_refused(sample: pd.DataFrame, dataset: config.Dataset, tmp_path: Path) -> None:
    bad = sample.copy()
    bad.loc[10:12, "balance"] = None
    assert problems(write(bad, tmp_path / "f.csv"), dataset)["balance"] == "balance: missing values (3 bad rows)"


def test_unknown_target_labels(sample: pd.DataFrame, dataset: config.Dataset, tmp_path: Path) -> None:
    bad = sample.copy()
    bad.loc[:3, "y"] = "maybe"
    assert problems(write(bad, tmp_path / "f.csv"), dataset)["y"] == "y: label not in ['no', 'yes'] (4 bad rows)"


def test_empty_file(dataset: config.Dataset, tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert problems(path, dataset) == {"(file)": "(file): the file is empty"}


def test_header_only(sample: pd.DataFrame, dataset: config.Dataset, tmp_path: Path) -> None:
    assert "no data rows" in problems(write(sample.head(0), tmp_path / "f.csv"), dataset)["(file)"]


def test_binary_file(dataset: config.Dataset, tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(path)
    assert "binary content" in problems(path, dataset)["(file)"]


def test_text_that_is_not_this_csv(dataset: config.Dataset, tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text("just some notes\nnot a table at all\n")
    found = problems(path, dataset)
    assert "required column is missing" in found["age"] and "unexpected column" in found["just some notes"]


def test_cli_exits_2_with_the_reason(sample: pd.DataFrame, tmp_path: Path) -> None:
    bad = sample.copy()
    bad.loc[:4, "age"] = "x"
    path = write(bad, tmp_path / "bad.csv")
    result = subprocess.run(
        [sys.executable, "-m", "mlops", "data", "--no-download"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "MLOPS_DATASET__SOURCE__PATH": str(path)},
    )
    assert result.returncode == 2
    assert "age: not a finite number (5 bad rows)" in " ".join(result.stderr.split())


def test_cli_says_where_to_put_a_missing_file(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "MLOPS_DATASET__SOURCE__PATH": str(tmp_path / "absent.csv"),
        "MLOPS_PATHS__DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "mlops", "data", "--no-download"], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "Put the file at" in message and "MLOPS_DATASET__SOURCE__PATH" in message
