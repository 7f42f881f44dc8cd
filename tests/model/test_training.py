"""The train pipeline's model: registered, good enough, fully logged, and behaving sensibly."""

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mlops.core import config
from mlops.core.data import features, preparation
from mlops.core.training import registry


@pytest.fixture(scope="module")
def client(trained: object, settings: config.Settings) -> MlflowClient:
    return registry.configure(settings)


@pytest.fixture(scope="module")
def challenger(client: MlflowClient, settings: config.Settings):  # type: ignore[no-untyped-def]
    version = registry.version_by_alias(client, settings.training.model_name, registry.CHALLENGER)
    assert version is not None, "train registered no challenger"
    return version


def test_registered_model_meets_the_quality_bar(challenger, settings: config.Settings) -> None:  # type: ignore[no-untyped-def]
    assert float(challenger.tags["validation_roc_auc"]) >= 0.78
    assert float(challenger.tags["validation_pr_auc"]) > 0.35  # base rate is 0.11
    assert float(challenger.tags["validation_lift_at_10"]) > 3
    assert 0 < float(challenger.tags["threshold"]) < 1


def test_every_family_is_a_child_run_with_metrics_and_plots(
    client: MlflowClient,
    challenger,  # type: ignore[no-untyped-def]
    settings: config.Settings,
) -> None:
    parent = challenger.tags["training_run_id"]
    experiment = client.get_experiment_by_name(settings.stores.experiment)
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.data.tags["family"] for r in children) == sorted(settings.training.families)
    for run in children:
        for metric in ("roc_auc", "pr_auc", "lift_at_10", "log_loss", "f1", "precision", "recall", "threshold"):
            assert f"validation_{metric}" in run.data.metrics, (run.data.tags["family"], metric)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert artifacts == {"plots/roc.png", "plots/pr.png", "plots/calibration.png", "plots/feature_importance.png"}
        root = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"feature_schema.json", "feature_importance.json"} <= root
    ranks = sorted(r.data.tags.get("challenger_rank", "") for r in children)
    assert ranks[-3:] == ["1", "2", "3"]


def test_the_experiment_opens_on_its_training_runs(client: MlflowClient, settings: config.Settings) -> None:
    """MLflow 3's UI shows an untagged experiment's GenAI overview (traces, tokens, "No data") first."""
    experiment = client.get_experiment_by_name(settings.stores.experiment)
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"


def test_the_artifact_is_one_pipeline_with_a_signature(challenger, settings: config.Settings) -> None:  # type: ignore[no-untyped-def]
    import mlflow

    info = mlflow.models.get_model_info(f"models:/{settings.training.model_name}@challenger")
    names = [c.name for c in info.signature.inputs.inputs]
    assert names == settings.dataset.features and "duration" not in names
    pipeline = registry.load_pipeline(settings.training.model_name, registry.CHALLENGER)
    assert [name for name, _ in pipeline.steps] == ["preprocess", "model"]


@pytest.fixture(scope="module")
def model_and_test(challenger, settings: config.Settings):  # type: ignore[no-untyped-def]
    pipeline = registry.load_pipeline(settings.training.model_name, registry.CHALLENGER)
    test = features.normalise(preparation.load_split(settings, "test"), settings.dataset)
    return pipeline, test


def test_none_and_nan_score_the_same(model_and_test) -> None:  # type: ignore[no-untyped-def]
    pipeline, test = model_and_test
    records = test.head(200).astype(object).where(test.head(200).notna(), None).to_dict("records")
    from_records = features.frame_from_records(records, config.load().dataset)
    assert (pipeline.predict_proba(from_records)[:, 1] == pipeline.predict_proba(test.head(200))[:, 1]).all()


def test_a_previous_success_raises_the_score(model_and_test) -> None:  # type: ignore[no-untyped-def]
    """Directional behaviour: clients whose previous campaign succeeded are likelier to subscribe."""
    pipeline, test = model_and_test
    success = pipeline.predict_proba(test.assign(poutcome="success"))[:, 1]
    failure = pipeline.predict_proba(test.assign(poutcome="failure"))[:, 1]
    assert (success > failure).mean() > 0.9


def test_unknown_categories_do_not_break_scoring(model_and_test) -> None:  # type: ignore[no-untyped-def]
    pipeline, test = model_and_test
    proba = pipeline.predict_proba(test.head(50).assign(job="astronaut"))[:, 1]
    assert pd.Series(proba).between(0, 1).all()


def test_feature_schema_travels_with_the_run(client: MlflowClient, challenger) -> None:  # type: ignore[no-untyped-def]
    import mlflow

    from mlops.core.data import schema

    run_id = challenger.tags["candidate_run_id"]
    loaded = schema.FeatureSchema.from_dict(mlflow.artifacts.load_dict(f"runs:/{run_id}/{schema.ARTIFACT}"))
    assert "duration" not in loaded.features
    assert loaded.categorical["job"].nullable and not loaded.categorical["marital"].nullable
    assert "success" in loaded.categorical["poutcome"].categories
    assert loaded.numerical["age"].integer and loaded.numerical["age"].minimum >= 18
