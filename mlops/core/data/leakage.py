"""Leakage check: each column's single-feature ROC-AUC on the reference, flagged above a bound.

A column is flagged when it alone predicts the target suspiciously well (above
``dataset.leakage.max_single_feature_auc``) or when the configuration declares it post-outcome. A flagged
column that is still a model feature fails the check: it must be moved to ``dataset.excluded``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from mlops.core.config import Settings
from mlops.core.data.preparation import labels


class LeakageError(ValueError):
    """A model feature is flagged as leaking the target."""


@dataclass(frozen=True)
class ColumnLeakage:
    column: str
    single_feature_auc: float
    flagged: bool
    excluded: bool
    reason: str


def _scores(values: pd.Series, y: np.ndarray, seed: int) -> np.ndarray:
    """Numbers score as themselves; categories by their out-of-fold positive rate (no self-leak)."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == values.notna().sum():
        return numeric.fillna(numeric.median()).to_numpy(dtype=float)
    text = values.astype(object).where(values.notna(), "__missing__").astype(str)
    scores = np.zeros(len(values))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    for train_idx, test_idx in folds.split(np.zeros(len(y)), y):
        rates = pd.Series(y[train_idx]).groupby(text.iloc[train_idx].to_numpy()).mean()
        mapped = text.iloc[test_idx].map(rates).astype(float)
        scores[test_idx] = mapped.fillna(float(y[train_idx].mean())).to_numpy()
    return scores


def single_feature_auc(values: pd.Series, y: np.ndarray, seed: int = 0) -> float:
    """ROC-AUC of one column alone, direction-free (max of AUC and 1 - AUC)."""
    if len(np.unique(y)) < 2:
        return float("nan")
    if values.isna().all():  # an empty column (a CSV header ending in ",," has them) tells nothing
        return 0.5
    auc = float(roc_auc_score(y, _scores(values.reset_index(drop=True), y, seed)))
    return max(auc, 1.0 - auc)


def check(reference: pd.DataFrame, settings: Settings) -> list[ColumnLeakage]:
    """Score every feature and excluded column on the reference; flag and explain."""
    dataset = settings.dataset
    bound = dataset.leakage.max_single_feature_auc
    y = labels(reference, settings)
    results: list[ColumnLeakage] = []
    for column in [*dataset.features, *dataset.excluded]:
        auc = single_feature_auc(reference[column], y, settings.dataset.split.seed)
        declared = dataset.excluded.get(column)
        reasons = []
        if auc > bound:
            reasons.append(f"single-feature ROC-AUC {auc:.3f} above {bound}")
        if declared is not None and declared.post_outcome:
            reasons.append(f"declared post-outcome: {declared.reason}")
        results.append(
            ColumnLeakage(
                column=column,
                single_feature_auc=round(auc, 6),
                flagged=bool(reasons),
                excluded=declared is not None,
                reason="; ".join(reasons),
            )
        )
    return sorted(results, key=lambda r: -r.single_feature_auc)


def as_records(results: list[ColumnLeakage]) -> list[dict[str, object]]:
    return [asdict(r) for r in results]


def enforce(results: list[ColumnLeakage]) -> None:
    """Fail when a flagged column is still a model feature."""
    leaking = [r for r in results if r.flagged and not r.excluded]
    if leaking:
        named = ", ".join(f"{r.column} ({r.reason})" for r in leaking)
        highest = max(r.single_feature_auc for r in leaking)
        raise LeakageError(
            f"leaking model features: {named}. Move them to dataset.excluded in the configuration if they are "
            "known only after the outcome; if they are honest predictors known before it, raise "
            f"dataset.leakage.max_single_feature_auc above {highest:.3f}."
        )
