"""MLflow tracking and model registry: one place that knows the store URLs, aliases and version tags.

The model artifact is one fitted sklearn Pipeline (preprocessing + model), logged with its signature and
an input example, registered under ``training.model_name`` and addressed by alias
(``models:/<name>@champion``); registry stages are deprecated and not used.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS
from sklearn.pipeline import Pipeline

from mlops.core import families
from mlops.core.config import Settings

CHAMPION = "champion"
# MLflow 3's UI opens an experiment on its GenAI overview (traces, tokens) unless this tag names its kind; the
# value is one its UI code defines, so the experiment opens on the training runs.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"

# Types skops must be told to trust to load our pipelines (the rest of sklearn's are trusted by default),
# each family's in its entry. We only ever load models this platform trained and logged itself.
SKOPS_TRUSTED_TYPES = families.trusted_types()


def configure(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured stores and make sure the experiment exists."""
    uri = settings.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    quiet_mlflow()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = settings.stores.experiment
    if client.get_experiment_by_name(name) is None:
        # A local store keeps artifacts where the configuration says; a server decides for itself.
        location = settings.artifact_location if is_local_store(uri) else None
        try:
            client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
        except MlflowException:
            if client.get_experiment_by_name(name) is None:  # not a lost race with another process
                raise
    experiment = mlflow.set_experiment(name)
    for key, value in EXPERIMENT_KIND.items():
        if experiment.tags.get(key) != value:  # an experiment made before the tag existed
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return client


def quiet_mlflow() -> None:
    """Keep MLflow's chatter a user cannot act on out of the pipelines' output.

    The model's requirements are pinned explicitly (:func:`model_requirements`), so MLflow need not log the
    project's whole ``uv.lock`` with each model (nor warn that a uv venv has no pip); artifact downloads
    draw carriage-return bars into piped logs; creating the local store's tables logs at INFO.
    """
    os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    # MLflow prints a run's link with the tracking URI's host, which inside compose is a service name the
    # user's browser cannot open: the train block prints the configured public one instead (run_url).
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.utils.environment", "mlflow.utils.uv_utils"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_url(settings: Settings, client: MlflowClient, run_id: str) -> str | None:
    """A run's page in MLflow's UI at the URL a user's browser opens (``stores.ui_url``); None without a UI."""
    if (base := settings.tracking_ui_url) is None:
        return None
    return f"{base}/#/experiments/{client.get_run(run_id).info.experiment_id}/runs/{run_id}"


def model_requirements() -> list[str]:
    """What loading the pipeline needs, pinned to this environment (not the whole project's lock)."""
    packages = ["mlflow", "scikit-learn", "xgboost", "pandas", "numpy", "skops", "cloudpickle"]
    return [f"{name}=={installed_version(name)}" for name in packages]


def is_local_store(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "databricks"))


def log_pipeline(
    pipeline: Pipeline, example: pd.DataFrame, registered_name: str | None = None
) -> mlflow.models.model.ModelInfo:
    """Log the fitted pipeline (signature on probabilities, input example) to the active run."""
    proba = pipeline.predict_proba(example)
    signature = infer_signature(example, proba)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Hint: Inferred schema contains integer.*")
        return mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=signature,
            input_example=example.head(5),
            pyfunc_predict_fn="predict_proba",
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            registered_model_name=registered_name,
            pip_requirements=model_requirements(),
        )


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    alias: str | None
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def register(
    client: MlflowClient, model_uri: str, name: str, tags: dict[str, Any], alias: str | None = None
) -> RegisteredModel:
    """Register a logged model (``models:/<model_id>``) as a new version, tag it, and point ``alias`` at it.

    The client's calls rather than ``mlflow.register_model``, which prints its progress to stderr.
    """
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    model_id = model_uri.removeprefix("models:/")
    text_tags = {k: str(v) for k, v in tags.items()}
    version = client.create_model_version(name, model_uri, tags=text_tags, model_id=model_id)
    # what mlflow.register_model records too: the logged model links to its registered version in the UI
    client.set_logged_model_tags(
        model_id, {MLFLOW_MODEL_VERSIONS: json.dumps([{"name": name, "version": version.version}])}
    )
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return RegisteredModel(name, str(version.version), alias, text_tags)


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


@dataclass(frozen=True)
class AliasedModel:
    """The version an alias points at, loaded: its pipeline and the decision threshold it was tagged with."""

    name: str
    version: str
    run_id: str
    threshold: float
    pipeline: Pipeline


def load_aliased(settings: Settings, alias: str = CHAMPION) -> AliasedModel | None:
    """``models:/<training.model_name>@<alias>`` loaded, or None while the alias points nowhere."""
    client = configure(settings)
    name = settings.training.model_name
    found = version_by_alias(client, name, alias)
    if found is None:
        return None
    version = str(found.version)
    threshold = float(found.tags.get("threshold", 0.5))
    return AliasedModel(name, version, str(found.run_id), threshold, load_pipeline(name, version))


def load_pipeline(name: str, alias_or_version: str) -> Pipeline:
    """Load the fitted pipeline by alias (``champion``) or version number."""
    ref = f"models:/{name}/{alias_or_version}" if alias_or_version.isdigit() else f"models:/{name}@{alias_or_version}"
    return mlflow.sklearn.load_model(ref)
