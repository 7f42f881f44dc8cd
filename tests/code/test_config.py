"""Configuration: YAML + MLOPS_* overrides, validation errors that name the key."""

from pathlib import Path

import pytest

from mlops.core import config

BASE = {"MLOPS_ROOT": str(config.PACKAGE_ROOT)}


def test_default_configuration_loads_and_excludes_duration() -> None:
    settings = config.load(environ=BASE)
    assert settings.dataset.target == "y"
    assert settings.dataset.positive_label == "yes"
    assert "duration" not in settings.dataset.features
    assert settings.dataset.excluded["duration"].post_outcome


def test_environment_overrides_are_typed_and_nested() -> None:
    env = {**BASE, "MLOPS_TRAINING__SEARCH__MAX_TRIALS": "7", "MLOPS_STORES__TRACKING_URI": "http://mlflow:5000"}
    settings = config.load(environ=env)
    assert settings.training.search.max_trials == 7
    assert settings.tracking_uri == "http://mlflow:5000"


def test_relative_sqlite_urls_resolve_against_the_root(tmp_path: Path) -> None:
    settings = config.load(
        environ={
            **BASE,
            "MLOPS_ROOT": str(tmp_path),
            "MLOPS_CONFIG": str(config.PACKAGE_ROOT / "configs/bank_marketing.yaml"),
        }
    )
    assert settings.tracking_uri == f"sqlite:///{tmp_path}/.mlops/mlflow.db"
    assert settings.work_dir == tmp_path / ".mlops"
    relative = config.load(environ={**BASE, "MLOPS_STORES__MONITORING_DB": "sqlite:///elsewhere/m.db"})
    assert relative.monitoring_db == f"sqlite:///{config.PACKAGE_ROOT}/elsewhere/m.db"


def test_every_store_and_folder_follows_the_work_dir(tmp_path: Path) -> None:
    work = tmp_path / "work"
    settings = config.load(environ={**BASE, "MLOPS_PATHS__WORK_DIR": str(work)})
    assert settings.tracking_uri == f"sqlite:///{work}/mlflow.db"
    assert settings.monitoring_db == f"sqlite:///{work}/monitoring.db"
    assert settings.artifact_location == (work / "mlartifacts").as_uri()
    assert settings.spool_dir == work / "spool"
    assert settings.drift_reports_dir == work / "reports" / "evidently"
    assert settings.prepared_dir == work / "datasets" / settings.dataset.name
    assert settings.reports_dir == work / "reports" / settings.dataset.name
    # a store named explicitly stays where it is named
    named = config.load(
        environ={**BASE, "MLOPS_PATHS__WORK_DIR": str(work), "MLOPS_STORES__TRACKING_URI": "http://m:5000"}
    )
    assert named.tracking_uri == "http://m:5000"


def test_an_override_of_no_section_is_refused_naming_it() -> None:
    with pytest.raises(config.ConfigError, match=r"MLOPS_TRAINNG__SEED.*no such section"):
        config.load(environ={**BASE, "MLOPS_TRAINNG__SEED": "1"})


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"MLOPS_DATASET__SPLIT__VALIDATION_SIZE": "1.5"}, "dataset.split.validation_size"),
        ({"MLOPS_TRAINING__FAMILIES": "[svm]"}, "training.families"),
        ({"MLOPS_DATASET__POSITIVE_LABEL": "maybe"}, "positive_label"),
        ({"MLOPS_TRAINING__UNKNOWN_KEY": "1"}, "training.unknown_key"),
    ],
)
def test_invalid_values_name_the_key(override: dict[str, str], named: str) -> None:
    with pytest.raises(config.ConfigError, match=named.replace(".", r"\.")):
        config.load(environ={**BASE, **override})


def test_a_column_listed_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="'age' is listed both as numerical and as categorical"):
        config.load(environ={**BASE, "MLOPS_DATASET__CATEGORICAL": "[age, job]"})


def test_missing_file_says_which(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="configuration file not found"):
        config.load(environ={**BASE, "MLOPS_CONFIG": str(tmp_path / "nope.yaml")})


def test_the_test_harness_namespace_is_not_configuration() -> None:
    settings = config.load(environ={**BASE, "MLOPS_TEST_FAIL_ON_SKIP": "1", "MLOPS_TEST_DATA": "/x.csv"})
    assert settings.project == "bank-marketing"


def test_a_table_without_presentation_gets_neutral_words(tmp_path: Path) -> None:
    bank = (config.PACKAGE_ROOT / "configs/bank_marketing.yaml").read_text()
    file = tmp_path / "plain.yaml"
    file.write_text(bank.split("\npresentation:")[0])  # everything before the bank's words
    words = config.load(file, environ=BASE).presentation
    assert words.title is None  # the app shows the dataset's name
    text = " ".join(str(v) for v in words.model_dump().values()).lower()
    assert not any(bank in text for bank in ("subscri", "client", "call", "bank"))


def test_an_override_with_a_colon_is_text_and_a_flow_mapping_is_a_mapping() -> None:
    env = {
        **BASE,
        "MLOPS_PRESENTATION__TITLE": "Churn: who to keep",
        "MLOPS_DATASET__LEAKAGE": "{max_single_feature_auc: 0.9}",
    }
    settings = config.load(environ=env)
    assert settings.presentation.title == "Churn: who to keep"
    assert settings.dataset.leakage.max_single_feature_auc == 0.9


def test_links_shown_to_a_user_use_the_public_urls_not_service_names() -> None:
    """Inside compose the services reach each other by name (http://mlflow:5000); a browser cannot open that."""
    local = config.load(environ={})
    assert local.tracking_ui_url is None  # a local store: no UI runs
    assert local.predictor_public_url == local.serving.url
    inside = config.load(
        environ={"MLOPS_STORES__TRACKING_URI": "http://mlflow:5000", "MLOPS_SERVING__URL": "http://predictor:8080"}
    )
    assert inside.tracking_ui_url == "http://mlflow:5000"  # no public URL configured: the only one known
    public = config.load(
        environ={
            "MLOPS_STORES__TRACKING_URI": "http://mlflow:5000",
            "MLOPS_STORES__UI_URL": "http://127.0.0.1:5000/",
            "MLOPS_SERVING__PUBLIC_URL": "http://127.0.0.1:8080",
        }
    )
    assert (public.tracking_ui_url, public.predictor_public_url) == ("http://127.0.0.1:5000", "http://127.0.0.1:8080")


def test_compose_gives_every_service_the_published_urls_for_links() -> None:
    import yaml

    environment = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())["x-platform-env"]
    assert environment["MLOPS_STORES__UI_URL"] == "${MLFLOW_PUBLIC_URL:-http://127.0.0.1:5000}"
    assert environment["MLOPS_SERVING__PUBLIC_URL"] == "${PREDICTOR_PUBLIC_URL:-http://127.0.0.1:8080}"
