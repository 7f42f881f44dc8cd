"""The campaign planner: how many subscriptions a budget of N calls buys, with the model versus at random.

Measured on labeled data (the latest monitoring batch the prepare pipeline wrote, which the model never
trained on): calling the N highest-scored clients finds the positives actually among them; calling N clients
at random finds, in expectation, N times the base rate. The cumulative gain curve (share of all positives
found after calling a share of the list, best first) and the lift curve (gain over the random share) show
the whole trade-off at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from mlops.core.config import Settings
from mlops.core.data import features, preparation


@dataclass(frozen=True)
class LabeledData:
    """Clients with their known outcome: the frame (features + target) and where it came from."""

    name: str
    frame: pd.DataFrame
    path: Path


@dataclass(frozen=True)
class CampaignPlan:
    calls: int
    population: int
    positives: int  # positives in the whole population
    by_model: int  # positives among the ``calls`` highest-scored clients
    at_random: float  # expected positives among ``calls`` random clients
    model_expected: float  # sum of the top ``calls`` probabilities: what the model itself predicts

    @property
    def lift(self) -> float:
        """How many times more subscriptions the model's list finds than a random one."""
        return self.by_model / self.at_random if self.at_random else float("nan")

    @property
    def share_found(self) -> float:
        """Share of all positives reached by the model's list."""
        return self.by_model / self.positives if self.positives else float("nan")


def latest_labeled(settings: Settings) -> LabeledData:
    """The newest labeled data prepare wrote: the last configured batch on disk, else the test split."""
    for name in reversed(preparation.batch_names(settings)):
        path = preparation.batch_path(settings, name)
        if path.is_file():
            return LabeledData(f"batch:{name}", pd.read_parquet(path), path)
    path = settings.prepared_dir / "test.parquet"
    if path.is_file():
        return LabeledData("test", pd.read_parquet(path), path)
    raise FileNotFoundError(f"no labeled data in {settings.prepared_dir}: run the prepare pipeline first")


def scored(pipeline: Pipeline, labeled: LabeledData, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """(labels as 0/1, the pipeline's probabilities) for every client of ``labeled``."""
    X = features.normalise(labeled.frame, settings.dataset)
    return preparation.labels(labeled.frame, settings), pipeline.predict_proba(X)[:, 1]


def _ranked(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.int64)
    scores = np.asarray(scores, dtype=float)
    if y.shape != scores.shape or y.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D and the same length, got {y.shape} and {scores.shape}")
    if len(y) == 0:
        raise ValueError("no labeled rows to plan on")
    order = np.argsort(-scores, kind="stable")  # ties keep data order: a deterministic list
    return y[order], scores[order]


def plan(y: np.ndarray, scores: np.ndarray, calls: int) -> CampaignPlan:
    """Subscriptions from calling the top ``calls`` clients by score versus ``calls`` at random."""
    ranked_y, ranked_scores = _ranked(y, scores)
    population = len(ranked_y)
    if not 0 < calls <= population:
        raise ValueError(f"calls must be between 1 and the {population} clients available, got {calls}")
    positives = int(ranked_y.sum())
    return CampaignPlan(
        calls=calls,
        population=population,
        positives=positives,
        by_model=int(ranked_y[:calls].sum()),
        at_random=calls * positives / population,
        model_expected=float(ranked_scores[:calls].sum()),
    )


def gain_curve(y: np.ndarray, scores: np.ndarray, points: int = 100) -> pd.DataFrame:
    """Cumulative gain and lift at ``points`` evenly spaced list depths (plus the empty list).

    Columns: ``calls``, ``share_called``, ``found_by_model``, ``gain`` (share of positives found),
    ``random_gain`` (= share_called), ``lift`` (gain / random_gain; undefined for the empty list).
    """
    ranked_y, _ = _ranked(y, scores)
    population = len(ranked_y)
    positives = int(ranked_y.sum())
    found = np.concatenate([[0], np.cumsum(ranked_y)])
    depth = np.unique(np.linspace(0, population, min(points, population) + 1).round().astype(np.int64))
    share_called = depth / population
    gain = found[depth] / positives if positives else np.zeros(len(depth))
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(depth > 0, gain / share_called, np.nan)
    return pd.DataFrame(
        {
            "calls": depth,
            "share_called": share_called,
            "found_by_model": found[depth],
            "gain": gain,
            "random_gain": share_called,
            "lift": lift,
        }
    )
