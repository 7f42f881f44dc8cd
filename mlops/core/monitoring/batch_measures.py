"""What the monitor measures of a batch over every row, whichever engine measured it: the row count, the share of
missing feature cells, the champion's quality where labels are known, and the sample Evidently compares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from mlops.core.config import Dataset as DatasetConfig


@dataclass
class BatchMeasures:
    """What the monitor measures of a batch over every row, and the sample Evidently compares (either engine)."""

    rows: int
    missing_share: float
    scores: dict[str, float | None]  # roc_auc, pr_auc, f1 (None where the batch has no labels)
    sample: pd.DataFrame  # model inputs and the champion's probability, at most drift_sample_rows rows


def missing_share(frame: pd.DataFrame, dataset: DatasetConfig) -> float:
    """The share of missing feature cells, counted over every row."""
    cells = len(frame) * len(dataset.features)
    return float(frame[dataset.features].isna().to_numpy().sum()) / cells if cells else 0.0


def quality(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float | None]:
    """ROC-AUC, PR-AUC and F1 at the model's threshold; AUCs are undefined with one class only."""
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, proba)) if both else None,
        "pr_auc": float(average_precision_score(y, proba)) if both else None,
        "f1": float(f1_score(y, (proba >= threshold).astype(int), zero_division=0)),
    }
