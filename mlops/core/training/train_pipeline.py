"""The train pipeline on ``compute.engine``: every configured family tuned in this process (``tuning``), or XGBoost
trained on Spark (``spark_training``); either way the best is registered as ``challenger``."""

from __future__ import annotations

from rich.console import Console

from mlops.core.config import Settings
from mlops.core.data import preparation
from mlops.core.training import tuning


def train_prepared(settings: Settings, console: Console | None = None) -> tuning.TrainingResult:
    """The train pipeline: the prepared splits trained on ``compute.engine`` (pandas here, or Spark)."""
    if settings.compute.engine == "spark":
        from mlops.core.training import spark_training  # pyspark is the spark extra's

        return spark_training.train(settings, console)
    return tuning.train(settings, preparation.load_splits(settings), console)
