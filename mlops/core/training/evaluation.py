"""Evaluation of scored binary predictions: ranking metrics, lift, thresholded metrics, and plots."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: plots are files, never windows
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from mlops.core.config import Threshold


def lift_key(fraction: float) -> str:
    """Metric name of the lift at ``fraction``: ``lift_at_10`` for 0.1."""
    return f"lift_at_{round(fraction * 100)}"


def lift_at(y: np.ndarray, proba: np.ndarray, fraction: float) -> float:
    """Positive rate among the top ``fraction`` by score, divided by the overall positive rate."""
    base = float(np.mean(y))
    if base == 0:
        return float("nan")
    top = max(1, round(len(y) * fraction))
    order = np.argsort(-proba, kind="stable")[:top]
    return float(np.mean(y[order]) / base)


def choose_threshold(y: np.ndarray, proba: np.ndarray, policy: Threshold) -> float:
    """F1-optimal threshold, or the one minimising expected cost, on the given (validation) data."""
    if policy.strategy == "f1":
        precision, recall, thresholds = precision_recall_curve(y, proba)
        f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
        return float(thresholds[int(np.argmax(f1[:-1]))])
    candidates = np.unique(np.round(proba, 4))
    costs = [
        policy.false_positive_cost * np.sum((proba >= t) & (y == 0))
        + policy.false_negative_cost * np.sum((proba < t) & (y == 1))
        for t in candidates
    ]
    return float(candidates[int(np.argmin(costs))])


def metrics(y: np.ndarray, proba: np.ndarray, threshold: float, lift_fraction: float = 0.1) -> dict[str, float]:
    """ROC-AUC, PR-AUC, lift, log loss and F1/precision/recall at ``threshold``; never accuracy alone."""
    y = np.asarray(y)
    proba = np.asarray(proba, dtype=float)
    decision = (proba >= threshold).astype(int)
    both_classes = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, proba)) if both_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, proba)) if both_classes else float("nan"),
        lift_key(lift_fraction): lift_at(y, proba, lift_fraction),
        "log_loss": float(log_loss(y, np.clip(proba, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "f1": float(f1_score(y, decision, zero_division=0)),
        "precision": float(precision_score(y, decision, zero_division=0)),
        "recall": float(recall_score(y, decision, zero_division=0)),
        "threshold": float(threshold),
        "positive_rate": float(np.mean(y)),
        "rows": float(len(y)),
    }


def roc_figure(y: np.ndarray, proba: np.ndarray, title: str) -> Figure:
    fpr, tpr, _ = roc_curve(y, proba)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"ROC-AUC {roc_auc_score(y, proba):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right")
    return fig


def pr_figure(y: np.ndarray, proba: np.ndarray, title: str) -> Figure:
    precision, recall, _ = precision_recall_curve(y, proba)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(recall, precision, label=f"PR-AUC {average_precision_score(y, proba):.3f}")
    ax.axhline(float(np.mean(y)), linestyle="--", color="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title=title)
    ax.legend(loc="upper right")
    return fig


def calibration_figure(y: np.ndarray, proba: np.ndarray, title: str) -> Figure:
    observed, predicted = calibration_curve(y, proba, n_bins=10, strategy="quantile")
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(predicted, observed, marker="o", label="model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.set(xlabel="mean predicted probability", ylabel="observed positive rate", title=title)
    ax.legend(loc="upper left")
    return fig


def importance_figure(importance: dict[str, float], title: str, top: int = 20) -> Figure:
    items = sorted(importance.items(), key=lambda kv: abs(kv[1]), reverse=True)[:top][::-1]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.3 * len(items))))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set(xlabel="importance", title=title)
    fig.tight_layout()
    return fig


def figures(y: np.ndarray, proba: np.ndarray, importance: dict[str, float], name: str) -> dict[str, Any]:
    """The standard plots of one model, keyed by artifact file name."""
    return {
        "plots/roc.png": roc_figure(y, proba, f"{name}: ROC (validation)"),
        "plots/pr.png": pr_figure(y, proba, f"{name}: precision-recall (validation)"),
        "plots/calibration.png": calibration_figure(y, proba, f"{name}: calibration (validation)"),
        "plots/feature_importance.png": importance_figure(importance, f"{name}: feature importance"),
    }
