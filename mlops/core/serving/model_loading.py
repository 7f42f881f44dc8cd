"""The predictor's model: the payload deploy wrote (``model.json`` + the MLflow model directory
``model-<version>/``) loaded into a scorer and a request validator, on a thread of lower priority while a
reload's old workers still serve. A payload without a usable model raises :class:`PayloadError`, whose message
is ``/ready``'s reason. The app that serves it is :mod:`mlops.core.serving.predictor_app`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow.sklearn
from threadpoolctl import threadpool_limits

from mlops.core.config import Settings
from mlops.core.data.schema import FeatureSchema
from mlops.core.serving.model_card import ModelCard, ModelCardError
from mlops.core.serving.request_validation import RecordValidator
from mlops.core.serving.scoring import Scorer, schema_probe, scorer_for

# gunicorn's arbiter imports the predictor app and so this module (predictor_server reads ARBITER_PID), so what
# is imported here is inherited by every forked worker. skops (MLflow's default model format) takes 1-2 s of
# CPU to import, walking every scikit-learn estimator: paid once in the arbiter, not by every worker of every
# reload, where it competed with the workers still serving.
with contextlib.suppress(ImportError):
    import skops.io  # noqa: F401

RELOAD_BOOT_NICE = 10  # a worker booting during a reload loads the model at this niceness (its thread only)


class PayloadError(RuntimeError):
    """The payload holds no usable model; the message is the /ready reason."""


@dataclass
class DeployedModel:
    card: ModelCard  # model.json
    schema: FeatureSchema
    scorer: Scorer
    validator: RecordValidator
    threshold: float
    name: str = field(init=False)
    version: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.card.name
        self.version = self.card.version


def open_categories(settings: Settings) -> set[str]:
    """Category columns whose unseen values are expected: the split column (training saw only some of its
    values by construction, e.g. months; the monitoring batches bring the others)."""
    split = settings.dataset.split
    if split.strategy == "column" and split.column in settings.dataset.categorical:
        return {split.column}
    return set()


def read_card(payload_dir: Path) -> ModelCard:
    try:
        card = ModelCard.read(payload_dir)
    except ModelCardError as exc:
        raise PayloadError(str(exc)) from exc
    if card is None:
        raise PayloadError("no champion deployed yet")
    return card


def load_model(payload_dir: Path, settings: Settings) -> DeployedModel:
    """Load the payload's model and build its scorer and request validator (raises :class:`PayloadError`)."""
    card = read_card(payload_dir)
    model_dir = payload_dir / card.model_dir
    try:
        pipeline = mlflow.sklearn.load_model(str(model_dir))
        schema = card.input_schema
    except Exception as exc:
        raise PayloadError(f"the model in {model_dir} could not be loaded: {exc}") from exc
    # Workers already use every core: threads per request only add overhead (and OpenMP threads spin
    # against the other workers). One thread each; the results are unchanged.
    threadpool_limits(limits=1)
    estimator = pipeline.steps[-1][1]
    if "n_jobs" in estimator.get_params():
        estimator.set_params(n_jobs=1)
    scorer = scorer_for(pipeline, settings.dataset, schema_probe(schema))
    validator = RecordValidator(
        schema, settings.serving.max_batch_rows, open_categories(settings), settings.serving.max_text_length
    )
    return DeployedModel(card, schema, scorer, validator, card.threshold)


def load_yielding(payload_dir: Path, settings: Settings) -> DeployedModel:
    """:func:`load_model` on a thread of lower priority (Linux sets niceness per thread): a worker booting
    during a reload leaves the CPU to the old workers, which serve until it is ready (predictor_worker)."""
    outcome: dict[str, Any] = {}

    def load() -> None:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RELOAD_BOOT_NICE)
        try:
            outcome["model"] = load_model(payload_dir, settings)
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    loader = threading.Thread(target=load, name="reload-boot")
    loader.start()
    loader.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["model"]
