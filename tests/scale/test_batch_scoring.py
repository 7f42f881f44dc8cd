"""Batch scoring of the registered champion on both engines: pandas in process and Spark on local[2].

Every one of the bank's 45,211 rows is scored by each engine and by the fitted pipeline itself; Spark's
probabilities must be the predictor's (the same scorer) to 1e-9. A table that breaks the schema is refused
before anything is written, by either engine, naming the column and the number of bad rows.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.core import config
from mlops.core.data import features, preparation
from mlops.core.data.validation import DataValidationError
from mlops.core.lifecycle import batch_scoring, champion_scoring
from mlops.core.serving import scoring

pytestmark = [pytest.mark.postgres, pytest.mark.mlflow, pytest.mark.slow, pytest.mark.spark]
PARITY = 1e-9


def on(settings: config.Settings, engine: str) -> config.Settings:
    compute = settings.compute.model_copy(update={"engine": engine, "spark_master": "local[2]"})
    return settings.model_copy(update={"compute": compute})


@pytest.fixture(scope="module")
def bank_table(settings: config.Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """Every bank row as a folder of two Parquet files (a table as Spark writes one)."""
    raw = preparation.load_raw(settings, allow_download=False)
    folder = tmp_path_factory.mktemp("bank-table")
    half = len(raw) // 2
    raw.iloc[:half].to_parquet(folder / "part-0.parquet", index=False)
    raw.iloc[half:].to_parquet(folder / "part-1.parquet", index=False)
    return raw, folder


def test_both_engines_score_every_row_as_the_predictor_does(
    champion: str, settings: config.Settings, bank_table: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    raw, folder = bank_table
    model = champion_scoring.champion(settings)  # the champion now (tests before this one may have promoted another)
    expected = model.pipeline.predict_proba(features.normalise(raw, settings.dataset))[:, 1]
    results = {}
    for engine in ("pandas", "spark"):
        out = tmp_path / f"scored-{engine}"
        result = batch_scoring.score_table(on(settings, engine), folder, out)
        assert (result.rows, result.engine, result.model_version) == (len(raw), engine, model.version)
        scored = pd.read_parquet(out)
        assert len(scored) == len(raw) and {champion_scoring.PROBABILITY, champion_scoring.DECISION} <= set(
            scored.columns
        )
        assert result.positives == int(scored[champion_scoring.DECISION].sum())
        results[engine] = scored
    # Spark writes its partitions in any order: rows are matched on every input column
    key = list(raw.columns)
    spark = results["spark"].astype({c: str for c in key}).sort_values(key, kind="stable")
    pandas_scored = results["pandas"].astype({c: str for c in key}).sort_values(key, kind="stable")
    pandas_proba = results["pandas"][champion_scoring.PROBABILITY].to_numpy()
    assert np.max(np.abs(pandas_proba - expected)) <= PARITY
    spark_diff = np.abs(
        spark[champion_scoring.PROBABILITY].to_numpy() - pandas_scored[champion_scoring.PROBABILITY].to_numpy()
    )
    assert spark_diff.max() <= PARITY
    assert (spark[champion_scoring.DECISION].to_numpy() == pandas_scored[champion_scoring.DECISION].to_numpy()).all()
    # the predictor's own path: JSON-like records through the same scorer
    records = scoring.frame_records(raw.head(2_000), settings.dataset.features)
    served = model.scorer(settings.dataset).predict(records)
    assert np.max(np.abs(served - pandas_proba[:2_000])) <= PARITY
    assert (results["pandas"][champion_scoring.DECISION] == (pandas_proba >= model.threshold)).all()


@pytest.mark.parametrize("engine", ["pandas", "spark"])
def test_a_table_that_breaks_the_schema_is_refused_before_anything_is_written(
    champion: str, settings: config.Settings, bank_table: tuple[pd.DataFrame, Path], tmp_path: Path, engine: str
) -> None:
    raw, _ = bank_table
    folder = tmp_path / "csv"
    folder.mkdir()
    broken = raw.head(3_000).astype(str)
    broken.loc[[3, 70, 900], "age"] = "forty"
    broken.drop(columns=[settings.dataset.target]).to_csv(
        folder / "a.csv", index=False, sep=settings.dataset.source.separator
    )
    out = tmp_path / "scored"
    with pytest.raises(DataValidationError) as refused:
        batch_scoring.score_table(on(settings, engine), folder, out)
    assert [str(p) for p in refused.value.problems] == ["age: not a finite number (3 bad rows)"]
    assert not out.exists()
    with pytest.raises(DataValidationError, match="age: required column is missing"):
        batch_scoring.score_table(on(settings, engine), _without(raw, "age", tmp_path), out)


def _without(raw: pd.DataFrame, column: str, tmp_path: Path) -> Path:
    path = tmp_path / "without.parquet"
    raw.drop(columns=[column]).head(100).to_parquet(path, index=False)
    return path


def test_the_score_command_writes_the_table_and_exits_2_on_bad_input(
    champion: str, platform_env: dict[str, str], bank_table: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    _, folder = bank_table
    out = tmp_path / "scored.parquet"
    command = [sys.executable, "-m", "mlops", "score", str(folder / "part-0.parquet"), str(out)]
    done = subprocess.run(command, env=platform_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "scored 22,605 rows" in " ".join(done.stdout.split()) and len(pd.read_parquet(out)) == 22_605
    bad = subprocess.run(
        [*command[:4], str(tmp_path / "nowhere"), str(out)],
        env=platform_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "no such file or folder" in bad.stderr
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    refused = subprocess.run(
        [*command[:4], str(empty), str(out)], env=platform_env, capture_output=True, text=True, timeout=300
    )
    assert refused.returncode == 2 and "the file is empty" in refused.stderr, refused.stderr[-2000:]
