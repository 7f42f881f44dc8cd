"""A promotion whose predictor switch fails is undone: the champion alias never names a version the predictor
does not serve (#12, 8). The predictor is a real gunicorn started with another reload token than deploy holds,
so it refuses the reload, as a predictor started by hand with its own token would."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from mlflow.tracking import MlflowClient

from mlops.core import config
from mlops.core.lifecycle import deploy, promotion
from mlops.core.serving.model_card import ModelCard
from tests.deploy.conftest import aliases, payload_folder, set_challenger
from tests.serving.conftest import Predictor, start_predictor  # noqa: F401 (fixture)


def test_a_failed_switch_moves_the_champion_back_to_the_version_served(
    client: MlflowClient,
    scenario_settings: config.Settings,
    register_trained,  # type: ignore[no-untyped-def]
    register_useless,  # type: ignore[no-untyped-def]
    start_predictor: Callable[..., Predictor],  # noqa: F811
) -> None:
    useless, trained = register_useless(), register_trained()
    set_challenger(client, scenario_settings, useless)
    assert promotion.promote_if_better(scenario_settings).action == "promoted"
    folder, _ = deploy.payload_for_champion(scenario_settings)
    predictor = start_predictor(folder, env={"MLOPS_SECRETS__RELOAD_TOKEN": secrets.token_hex(16)})
    settings = scenario_settings.model_copy(
        update={
            "serving": scenario_settings.serving.model_copy(update={"url": predictor.url}),
            "secrets": scenario_settings.secrets.model_copy(update={"reload_token": "not-the-predictors-token"}),
        }
    )
    set_challenger(client, settings, trained)
    decision = promotion.promote_if_better(settings)
    assert decision.action == "promoted" and aliases(client, settings)["champion"] == trained
    deploy.payload_for_champion(settings)

    with pytest.raises(promotion.DeployError) as raised:
        deploy.serve_or_revert(settings, decision.to_dict())

    message = str(raised.value)
    assert f"switched to version {trained}" in message and "refused the reload token (HTTP 403)" in message
    assert f"the champion is version {useless} again" in message
    assert aliases(client, settings)["champion"] == useless == predictor.get("/model").json()["version"]
    card = ModelCard.read(payload_folder(settings))
    assert card is not None and card.version == useless
    last = promotion.events(settings)[-1]
    assert (last["action"], last["version"], last["previous_version"]) == ("reverted", useless, trained)
    assert "refused the reload token" in last["reason"]
