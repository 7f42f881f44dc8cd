"""Validation of raw tabular files against the dataset's configuration, with pandera.

The raw file is read as text so that nothing is coerced before it is checked: a non-numeric value in a
numerical column, an unknown target label or a missing column is reported (column, reason, number of bad
rows), never filled or dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from mlops.core.config import Dataset

TABLE_SUFFIXES = (".parquet", ".csv")


@dataclass(frozen=True)
class Problem:
    column: str
    reason: str
    rows: int | None = None  # bad rows; None for a problem of the whole column or file

    def __str__(self) -> str:
        if self.rows is None:
            return f"{self.column}: {self.reason}"
        return f"{self.column}: {self.reason} ({self.rows} bad row{'s' if self.rows != 1 else ''})"


class DataValidationError(ValueError):
    """The file breaks the dataset's schema; ``problems`` names each column, reason and bad-row count."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source} is not valid for this dataset:\n{lines}")


def _finite(parsed: pd.Series) -> pd.Series:
    return parsed.notna() & (parsed.abs() != float("inf"))


def raw_schema(dataset: Dataset, parsed: Mapping[str, pd.Series] | None = None) -> pa.DataFrameSchema:
    """The schema of the raw file: every configured column, as text, with typed checks. ``parsed``: the numeric
    columns already parsed (``pd.to_numeric(errors="coerce")``), so that a large file's numbers are parsed once."""
    columns: dict[str, pa.Column] = {}
    for col in dataset.numerical:

        def is_number(series: pd.Series, col: str = col) -> pd.Series:
            if parsed is not None and col in parsed:
                return _finite(parsed[col].reindex(series.index))
            return _finite(pd.to_numeric(series, errors="coerce"))

        columns[col] = pa.Column(
            object,
            checks=pa.Check(is_number, element_wise=False, error="not a finite number", ignore_na=True),
            nullable=col in dataset.nullable_numerical,
        )
    for col in dataset.categorical:
        columns[col] = pa.Column(object, nullable=True)
    for col in dataset.excluded:
        columns[col] = pa.Column(object, nullable=True, required=True)
    columns[dataset.target] = pa.Column(
        object,
        checks=pa.Check.isin(dataset.labels, error=f"label not in {dataset.labels}"),
        nullable=False,
    )
    return pa.DataFrameSchema(columns, strict=True, ordered=False)


def read_text_frame(path: Path, separator: str = ",") -> pd.DataFrame:
    """Read a CSV with every cell as text (empty cells as missing); refuse what is not a CSV."""
    source = str(path)
    if not path.is_file():
        raise DataValidationError(source, [Problem("(file)", "file not found")])
    with path.open("rb") as fh:
        head = fh.read(8192)
    if not head.strip():
        raise DataValidationError(source, [Problem("(file)", "the file is empty")])
    if b"\x00" in head:
        raise DataValidationError(source, [Problem("(file)", "binary content, not a CSV text file")])
    try:
        frame = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataValidationError(source, [Problem("(file)", f"not a readable CSV: {exc}")]) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataValidationError(source, [Problem("(file)", "the file is empty")]) from exc
    if frame.empty:
        raise DataValidationError(source, [Problem("(file)", "a header but no data rows")])
    return frame


def _problems_from(errors: SchemaErrors) -> list[Problem]:
    cases = errors.failure_cases
    problems: list[Problem] = []
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        column_name = str(column) if pd.notna(column) else "(columns)"
        check_text = str(check)
        if check_text == "column_in_schema":
            for name in group["failure_case"]:
                problems.append(Problem(str(name), "unexpected column (not in the dataset configuration)"))
        elif check_text == "column_in_dataframe":
            for name in group["failure_case"]:
                problems.append(Problem(str(name), "required column is missing"))
        elif check_text == "not_nullable":
            problems.append(Problem(column_name, "missing values", int(group["index"].nunique())))
        else:
            problems.append(Problem(column_name, check_text, int(group["index"].nunique())))
    return problems


def validate_raw(frame: pd.DataFrame, dataset: Dataset, source: str = "data") -> pd.DataFrame:
    """Check a text frame against the schema and return it typed (numbers as floats, text as objects)."""
    parsed = {col: pd.to_numeric(frame[col], errors="coerce") for col in dataset.numerical if col in frame.columns}
    try:
        raw_schema(dataset, parsed).validate(frame, lazy=True)
    except SchemaErrors as exc:
        raise DataValidationError(source, _problems_from(exc)) from None
    typed = frame.copy(deep=False)  # the text columns are shared, not copied (millions of strings)
    for col in dataset.numerical:
        typed[col] = parsed[col].astype("float64")
    return typed


def feature_problems(frame: pd.DataFrame, dataset: Dataset) -> list[Problem]:
    """What keeps ``frame`` (a batch to monitor or score, already read) from being a model input: a missing
    feature column, a number that does not parse or is not finite, a missing number where none may be."""
    absent = [Problem(col, "required column is missing") for col in dataset.features if col not in frame.columns]
    if absent:
        return absent
    problems = []
    for col in dataset.numerical:
        values = frame[col]
        parsed = pd.to_numeric(values, errors="coerce")
        bad = int((parsed.isna() & values.notna()).sum() + np.isinf(parsed.to_numpy(dtype=float)).sum())
        if bad:
            problems.append(Problem(col, "not a finite number", bad))
        elif col not in dataset.nullable_numerical and (nulls := int(values.isna().sum())):
            problems.append(Problem(col, "missing values in a column that may not be empty", nulls))
    return problems


def table_files(source: Path) -> list[Path]:
    """The Parquet or CSV files of ``source`` (one file, or a folder's files of one kind)."""
    if source.is_file():
        files = [source]
    elif source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix in TABLE_SUFFIXES and not p.name.startswith((".", "_")))
    else:
        raise DataValidationError(str(source), [Problem("(file)", "no such file or folder")])
    kinds = {p.suffix for p in files}
    if not files or not kinds <= set(TABLE_SUFFIXES) or len(kinds) > 1:
        reason = "no .parquet or .csv file" if not files or not kinds <= set(TABLE_SUFFIXES) else "mixed file kinds"
        raise DataValidationError(str(source), [Problem("(file)", f"{reason} to read")])
    return files


def read_validated(path: Path, dataset: Dataset) -> pd.DataFrame:
    """Read and validate a raw file; raise ``DataValidationError`` naming every bad column."""
    frame = read_text_frame(path, dataset.source.separator)
    return validate_raw(frame, dataset, source=str(path))
