"""N times a table, for the scale benchmark: ``python -m benchmarks.scaled_table SOURCE FACTOR OUT [--seed S]``.

Rows are drawn from the source with replacement (seeded), so every category, season and label keeps its share;
numbers get a small jitter so no row is a plain copy: a normal step of 2% of the column's standard deviation
(rounded for integers), kept within the column's observed range; a column's most frequent value is left as it
is (the bank's ``pdays = -1``, "never contacted", and ``previous = 0`` are codes, not amounts). The
schema, the split column (the bank's ``month``) and the target are untouched, so the configured split gives
the same batches, each N times as large.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

JITTER_SD = 0.02  # of each number column's standard deviation
CHUNK_ROWS = 500_000  # rows written per step: memory stays flat whatever the factor


def jittered(sample: pd.DataFrame, source: pd.DataFrame, rng: np.random.Generator, keep: set[str]) -> pd.DataFrame:
    out = sample.reset_index(drop=True).copy()
    for column in source.columns:
        values = source[column]
        if column in keep or not pd.api.types.is_numeric_dtype(values) or values.nunique() < 3:
            continue
        spread = float(values.std()) * JITTER_SD
        original = out[column].to_numpy(dtype="float64")
        moved = np.clip(original + rng.normal(0.0, spread, len(out)), values.min(), values.max())
        moved = np.where(original == float(values.mode().iloc[0]), original, moved)
        if pd.api.types.is_integer_dtype(values):
            moved = np.rint(moved)
        out[column] = moved.astype(values.dtype)
    return out


def write_scaled(source: Path, factor: float, out: Path, seed: int = 0, keep: tuple[str, ...] = ()) -> int:
    """Write ``factor`` x the source's rows to ``out`` (CSV, the source's separator is a comma); return rows."""
    frame = pd.read_csv(source, keep_default_na=False, na_values=[""])
    rng = np.random.default_rng(seed)
    total = round(len(frame) * factor)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with out.open("w", newline="") as handle:
        while written < total:
            size = min(CHUNK_ROWS, total - written)
            sample = frame.iloc[rng.integers(0, len(frame), size)]
            jittered(sample, frame, rng, set(keep)).to_csv(handle, index=False, header=written == 0)
            written += size
    return written


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaled_table", description=__doc__)
    parser.add_argument("source", type=Path)
    parser.add_argument("factor", type=float)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", nargs="*", default=[], help="number columns left exact (a split column)")
    args = parser.parse_args(argv)
    if args.factor <= 0:
        parser.error("factor: must be positive")
    started = time.perf_counter()
    rows = write_scaled(args.source, args.factor, args.out, args.seed, tuple(args.keep))
    print(f"{rows:,} rows -> {args.out} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli(sys.argv[1:]))
