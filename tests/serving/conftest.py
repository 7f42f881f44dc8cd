"""Predictor fixtures: payloads of real models and running gunicorn predictors.

The payload of the trained challenger is written by the deploy code (``payload.write_payload``), exactly
as deploy writes it; small local payloads (a model fitted here in seconds) are written by
:func:`mlops.testing.payloads.write_local_payload` in the same layout, for the tests that need a second
model or another family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from mlops.core import config, services
from mlops.core.data import features, preparation
from mlops.core.serving import payload, predictor_server
from mlops.core.training import registry, tuning


def settings_with(settings: config.Settings, **serving_values: Any) -> config.Settings:
    return settings.model_copy(update={"serving": settings.serving.model_copy(update=serving_values)})


@pytest.fixture(scope="session")
def bank_frame(bank_csv: Path) -> pd.DataFrame:
    return pd.read_csv(bank_csv)


@pytest.fixture(scope="session")
def fit_small() -> Callable[[str, pd.DataFrame, config.Settings], Any]:
    """Fit one family with small parameters on a frame (a few seconds at most)."""
    params = {
        "logistic_regression": {"C": 1.0},
        "random_forest": {"n_estimators": 30, "max_depth": 6},
        "xgboost": {"n_estimators": 60, "max_depth": 4},
        "hist_gradient_boosting": {"max_iter": 40},
    }

    def fit(family: str, frame: pd.DataFrame, settings: config.Settings) -> Any:
        X = features.normalise(frame, settings.dataset)
        y = preparation.labels(frame, settings)
        return tuning.build(family, params[family], settings).fit(X, y)

    return fit


@pytest.fixture(scope="module")
def challenger_payload(trained: object, settings: config.Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The payload deploy writes, for the version the train pipeline registered as ``challenger``."""
    client = registry.configure(settings)
    version = registry.version_by_alias(client, settings.training.model_name, registry.CHALLENGER)
    assert version is not None
    folder = tmp_path_factory.mktemp("payload")
    return payload.write_payload(settings_with(settings, payload_dir=folder), str(version.version))


class Predictor:
    """A running gunicorn predictor and its URL."""

    def __init__(self, process: services.ManagedProcess, url: str, spool_dir: Path) -> None:
        self.process, self.url, self.spool_dir = process, url, spool_dir

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=60)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + path, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def start_predictor(
    settings: config.Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Predictor]]:
    """Factory: start gunicorn on a payload (waits until /ready); every predictor is stopped at the end."""
    started: list[services.ManagedProcess] = []

    def start(payload_dir: Path, env: dict[str, str] | None = None, wait_ready: bool = True) -> Predictor:
        folder = tmp_path_factory.mktemp("predictor")
        port = services.free_port()
        spool = folder / "spool"
        proc = predictor_server.predictor_process(
            settings,
            port=port,
            payload_dir=payload_dir,
            log_path=folder / "predictor.log",
            env={"MLOPS_SERVING__SPOOL_DIR": str(spool), **(env or {})},
        )
        started.append(proc.start())
        url = f"http://127.0.0.1:{port}"
        services.wait_http(f"{url}/ready" if wait_ready else f"{url}/health", proc, timeout=240)
        return Predictor(proc, url, spool)

    yield start
    for proc in started:
        proc.stop()
