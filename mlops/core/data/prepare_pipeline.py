"""The prepare pipeline's two steps on ``compute.engine``: the raw rows its checks read, and the split written.

pandas does both in this process (``preparation``); Spark validates, splits and writes on its executors
(``spark_preparation``), and only a sample of the reference reaches this process, for the leakage check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mlops.core.config import Settings
from mlops.core.data import preparation


def load_for_checks(settings: Settings) -> pd.DataFrame:
    """The prepare pipeline's raw rows: the validated file, or with ``compute.engine: spark`` (validated on Spark) a
    seeded sample of its reference of at most ``monitoring.drift_sample_rows`` rows, for the leakage check."""
    if settings.compute.engine == "spark":
        from mlops.core.data import spark_preparation  # pyspark is the spark extra's

        return spark_preparation.leakage_sample(settings)
    return preparation.load_raw(settings)


def split_and_persist(raw: pd.DataFrame, settings: Settings) -> tuple[Path, dict[str, Any]]:
    """The prepare pipeline's last step: split, write every part, and report on them. With ``compute.engine:
    spark`` the whole raw table is split and written by Spark (``raw`` is then only the checks' sample)."""
    if settings.compute.engine == "spark":
        from mlops.core.data import spark_preparation

        return settings.prepared_dir, spark_preparation.persist(settings)
    parts = preparation.split(raw, settings)
    return preparation.persist(parts, settings), preparation.data_report(parts, settings)
