"""What a monitored batch is compared with: rows the champion never saw, and the noise they show.

The reference is the validation and test splits: the champion was never fitted on them (its training rows
score more extremely, so comparing with those measured drift where there was none). The prediction-drift
alert threshold is the configured ``monitoring.prediction_drift_threshold`` or, if higher, the drift that
a sample of the same population already shows for this model: ``monitoring.noise_multiplier`` times the
95th percentile of the normed Wasserstein distance (Evidently's measure) between ``noise_samples`` random
samples of the reference, of the batch's size, and the rest of the reference. A small batch or a model
whose scores spread little gets a higher threshold instead of a false alarm. The threshold is recorded
with every monitor run (``column_drift.threshold`` of the prediction), which the alert rule reads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.pipeline import Pipeline

from mlops.core.config import Settings
from mlops.core.data import features, preparation

PREDICTION = "prediction"  # the champion's probability, monitored as a column of its own
REFERENCE_SPLITS = ("validation", "test")


CHUNK_ROWS = 250_000  # rows the pipeline scores at once: bounds its dense encoding on a large batch


def drift_sample(frame: pd.DataFrame, rows: int | None, seed: int) -> pd.DataFrame:
    """At most ``rows`` rows of ``frame``, drawn without replacement by ``seed`` (all of them if fewer)."""
    if rows is None or len(frame) <= rows:
        return frame
    return frame.sample(n=rows, random_state=seed).sort_index()


def probabilities(pipeline: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """The pipeline's positive-class probability of every row, a chunk of rows at a time."""
    parts = [pipeline.predict_proba(frame.iloc[i : i + CHUNK_ROWS])[:, 1] for i in range(0, len(frame), CHUNK_ROWS)]
    return np.concatenate(parts) if parts else np.empty(0)


def unseen_reference(settings: Settings, pipeline: Pipeline) -> pd.DataFrame:
    """The validation and test rows (a seeded sample of ``monitoring.drift_sample_rows`` of them if there are
    more) with the champion's probability on each."""
    parts = [preparation.load_split(settings, name) for name in REFERENCE_SPLITS]
    rows = drift_sample(
        pd.concat(parts, ignore_index=True), settings.monitoring.drift_sample_rows, settings.dataset.split.seed
    )
    reference = features.normalise(rows, settings.dataset)
    reference[PREDICTION] = probabilities(pipeline, reference)
    return reference


def wasserstein_normed(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently's ``wasserstein`` drift method: the distance over the reference's standard deviation."""
    norm = max(float(np.std(reference)), 0.001)
    return float(stats.wasserstein_distance(reference, current) / norm)


def prediction_noise(scores: np.ndarray, batch_rows: int, samples: int, seed: int) -> float:
    """The 95th percentile of the drift between a random sample of ``batch_rows`` reference scores (at most
    half of them) and the rest: what a batch of the same population measures by chance."""
    size = max(1, min(batch_rows, len(scores) // 2))
    rng = np.random.default_rng(seed)
    distances = []
    for _ in range(samples):
        chosen = np.zeros(len(scores), dtype=bool)
        chosen[rng.choice(len(scores), size, replace=False)] = True
        distances.append(wasserstein_normed(scores[~chosen], scores[chosen]))
    return float(np.percentile(distances, 95))


def prediction_threshold(settings: Settings, scores: np.ndarray, batch_rows: int) -> tuple[float, float]:
    """(threshold, noise): the configured threshold, raised to ``noise_multiplier`` x the noise if that is higher."""
    cfg = settings.monitoring
    # sorted: the threshold depends on the reference's scores, not on the order an engine read its rows in
    noise = prediction_noise(np.sort(scores), batch_rows, cfg.noise_samples, settings.dataset.split.seed)
    return max(cfg.prediction_drift_threshold, cfg.noise_multiplier * noise), noise
