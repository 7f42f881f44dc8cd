"""The champion as batch scoring holds it, and the function that scores a frame with it: one for both engines
(the pandas engine calls it on chunks of the table, Spark's executors on each Arrow batch of ``mapInPandas``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import mlflow
import pandas as pd
from sklearn.pipeline import Pipeline

from mlops.core.config import Dataset, Settings
from mlops.core.data import schema
from mlops.core.serving import frame_scoring
from mlops.core.serving.scoring import Scorer, decisions, schema_probe, scorer_for
from mlops.core.training import registry

PROBABILITY, DECISION = "probability", "decision"


class NoChampion(LookupError):
    """The model has no champion yet: deploy one before scoring."""


@dataclass(frozen=True)
class Champion:
    name: str
    version: str
    threshold: float
    pipeline: Pipeline
    feature_schema: schema.FeatureSchema

    def scorer(self, dataset: Dataset) -> Scorer:
        return scorer_for(self.pipeline, dataset, schema_probe(self.feature_schema))


def champion(settings: Settings) -> Champion:
    found = registry.load_aliased(settings)
    if found is None:
        name = settings.training.model_name
        raise NoChampion(f"model {name!r} has no champion: run the deploy pipeline before scoring")
    features = schema.FeatureSchema.from_dict(mlflow.artifacts.load_dict(f"runs:/{found.run_id}/{schema.ARTIFACT}"))
    return Champion(found.name, found.version, found.threshold, found.pipeline, features)


def scored_batches(
    frames: Iterator[pd.DataFrame], model: Champion, dataset: Dataset, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    """``mapInPandas``'s function body: each batch with its probability and decision (the scorer built once)."""
    scorer: Scorer | None = None
    for frame in frames:
        scorer = scorer or model.scorer(dataset)
        proba = frame_scoring.probabilities(scorer, frame, dataset, chunk_rows)
        yield frame.assign(**{PROBABILITY: proba, DECISION: decisions(proba, model.threshold)})
