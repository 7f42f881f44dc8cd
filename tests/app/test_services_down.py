"""Each page, with the predictor, MLflow or the monitoring database down, says which one, with no traceback."""

from __future__ import annotations

import pytest

from mlops.core import services
from tests.app.conftest import PAGES, AppPlatform, page

pytestmark = [pytest.mark.postgres, pytest.mark.mlflow, pytest.mark.mage, pytest.mark.slow]

DEAD = f"127.0.0.1:{services.free_port()}"  # nothing listens there
DOWN = {
    "predictor": ("MLOPS_SERVING__URL", f"http://{DEAD}", "The predictor is down"),
    "mlflow": ("MLOPS_STORES__TRACKING_URI", f"http://{DEAD}", "MLflow is down"),
    "database": (
        "MLOPS_STORES__MONITORING_DB",
        f"postgresql+psycopg2://postgres@{DEAD}/none",
        "The monitoring database is down",
    ),
}
# Which pages need which service (the others must not complain about it).
NEEDS = {
    "predictor": {"home", "test_form", "batch", "models", "campaign"},
    "mlflow": {"home", "models", "campaign"},
    "database": {"home", "monitoring"},
}


@pytest.mark.parametrize("service", list(DOWN))
@pytest.mark.parametrize("name", list(PAGES))
def test_a_page_names_the_service_that_is_down(
    app_env: AppPlatform, monkeypatch: pytest.MonkeyPatch, service: str, name: str
) -> None:
    key, value, message = DOWN[service]
    monkeypatch.setenv(key, value)
    at = page(name).run()
    assert not at.exception, [e.value for e in at.exception]
    said = [e.value for e in at.error] + [w.value for w in at.warning]
    if name in NEEDS[service]:
        assert any(message in text and DEAD in text for text in said), said
    else:
        assert not any(message in text for text in said), said
