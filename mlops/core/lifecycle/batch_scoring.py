"""Batch scoring: the champion (``models:/<name>@champion``) over a table of any size, written beside its rows.

``python -m mlops score INPUT OUTPUT``. INPUT is a Parquet or CSV file, or a folder of them; OUTPUT is a Parquet
file (pandas) or folder (Spark) holding the input's rows plus ``probability`` and ``decision`` (at the champion's
threshold). ``compute.engine`` chooses where the work runs and nothing else:

- ``pandas``: in this process, ``compute.chunk_rows`` rows at a time;
- ``spark``: on ``compute.spark_master`` (``local[N]`` or a standalone cluster); each Arrow batch of
  ``mapInPandas`` is scored by the same function.

Either way the scorer is the predictor's (``scoring.scorer_for`` on the model's schema probe), so a row scores
offline exactly as it does over HTTP. A table that breaks the dataset's schema (a missing feature column, text in a
number, a missing number where none may be) is refused before anything is written, naming column and rows; so
is a file that is no readable CSV or Parquet (empty, binary, truncated), naming the file and the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlops.core.config import Dataset, Settings
from mlops.core.data.validation import DataValidationError, Problem, feature_problems, read_text_frame, table_files
from mlops.core.lifecycle.champion_scoring import DECISION, PROBABILITY, champion
from mlops.core.serving import frame_scoring
from mlops.core.serving.scoring import decisions


@dataclass(frozen=True)
class ScoredTable:
    rows: int
    positives: int  # rows whose decision is positive
    model_version: str
    engine: str
    output: Path
    seconds: float


def check_parquet(files: list[Path]) -> None:
    """Each Parquet file's footer (its schema and row groups) reads, or :class:`DataValidationError` names the
    file and the reason: a broken file is bad input (exit 2), not a pyarrow traceback."""
    for path in files:
        if path.suffix == ".parquet":
            try:
                pq.ParquetFile(path).close()
            except (pa.ArrowException, OSError) as exc:
                raise _unreadable(path, exc) from exc


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (pa.ArrowException, OSError) as exc:  # a footer that reads over pages that do not
        raise _unreadable(path, exc) from exc


def _unreadable(path: Path, exc: Exception) -> DataValidationError:
    return DataValidationError(str(path), [Problem("(file)", f"not a readable Parquet file: {exc}")])


def read_table(source: Path, dataset: Dataset) -> pd.DataFrame:
    files = table_files(source)
    if files[0].suffix == ".parquet":
        check_parquet(files)
        return pd.concat([_read_parquet(p) for p in files], ignore_index=True)
    # CSV as text, as the data step reads it (an empty or binary file is refused there, by name); numbers are
    # parsed (and refused) by the feature check
    return pd.concat([read_text_frame(p, dataset.source.separator) for p in files], ignore_index=True)


def check(frame: pd.DataFrame, dataset: Dataset, source: str) -> pd.DataFrame:
    """``frame`` with its numeric features as float64, or :class:`DataValidationError` naming every problem."""
    problems = feature_problems(frame, dataset)
    if problems:
        raise DataValidationError(source, problems)
    if frame.empty:
        raise DataValidationError(source, [Problem("(file)", "no rows to score")])
    for col in dataset.numerical:
        frame[col] = pd.to_numeric(frame[col]).astype("float64")
    return frame


def score_table(settings: Settings, source: Path, output: Path) -> ScoredTable:
    started = time.perf_counter()
    check_parquet(table_files(source))  # either engine: a broken file is named before any work starts
    model = champion(settings)
    if settings.compute.engine == "spark":
        from mlops.core.lifecycle import spark_scoring  # pyspark is the spark extra's

        rows, positives = spark_scoring.score_table(settings, model, source, output)
    else:
        frame = check(read_table(source, settings.dataset), settings.dataset, str(source))
        proba = frame_scoring.probabilities(
            model.scorer(settings.dataset), frame, settings.dataset, settings.compute.chunk_rows
        )
        frame[PROBABILITY] = proba
        frame[DECISION] = decisions(proba, model.threshold)
        output.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(output, index=False)
        rows, positives = len(frame), int(frame[DECISION].sum())
    return ScoredTable(rows, positives, model.version, settings.compute.engine, output, time.perf_counter() - started)
