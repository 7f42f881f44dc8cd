"""The promotion policy on a real MLflow registry: first deploy promotes, worse is rejected, rollback restores.

One scenario runs once (module fixture) on a model name of its own, and each test checks one of its
outcomes: aliases, audit rows in model_events, idempotence, and the payload following the champion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from mlops.core import config
from mlops.core.lifecycle import deploy, promotion
from mlops.core.serving.model_card import ModelCard
from mlops.core.training import registry
from tests.deploy.conftest import aliases, payload_folder, set_challenger


@dataclass
class Step:
    decision: promotion.Decision
    aliases: dict[str, str]
    events: int  # model_events rows of the scenario's model after the step
    served: str | None  # the version model.json names after the step


@dataclass
class Scenario:
    useless: str
    trained: str
    worse: str
    steps: dict[str, Step] = field(default_factory=dict)
    rollback_error: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
def scenario(
    client: MlflowClient,
    scenario_settings: config.Settings,
    register_trained,  # type: ignore[no-untyped-def]
    register_useless,  # type: ignore[no-untyped-def]
) -> Scenario:
    s = scenario_settings
    result = Scenario(useless=register_useless(), trained=register_trained(), worse=register_useless())

    def step(name: str, decision: promotion.Decision) -> None:
        deploy.payload_for_champion(s)
        card = ModelCard.read(payload_folder(s))
        served = card.version if card else None
        result.steps[name] = Step(decision, aliases(client, s), len(promotion.events(s)), served)

    set_challenger(client, s, result.useless)
    step("first", promotion.promote_if_better(s))
    step("first_again", promotion.promote_if_better(s))
    set_challenger(client, s, result.trained)
    step("better", promotion.promote_if_better(s))
    set_challenger(client, s, result.worse)
    step("worse", promotion.promote_if_better(s))
    step("worse_again", promotion.promote_if_better(s))
    decision, _ = deploy.rollback(s)
    step("rollback", decision)
    set_challenger(client, s, result.trained)
    step("rolled_back_candidate", promotion.promote_if_better(s))
    with pytest.raises(promotion.DeployError) as raised:
        deploy.rollback(s)
    result.rollback_error = str(raised.value)
    result.events = promotion.events(s)
    return result


def test_the_first_deploy_promotes_whatever_the_candidate(scenario: Scenario) -> None:
    first = scenario.steps["first"]
    assert first.decision.action == "promoted" and first.decision.previous_version is None
    assert first.aliases[registry.CHAMPION] == scenario.useless
    assert registry.PREVIOUS_CHAMPION not in first.aliases
    assert first.decision.candidate_value == pytest.approx(0.5)
    assert first.served == scenario.useless


def test_deploying_the_same_version_twice_changes_nothing_but_says_so(scenario: Scenario) -> None:
    again = scenario.steps["first_again"]
    assert again.decision.action == "unchanged" and "already the champion" in again.decision.reason
    assert again.events == scenario.steps["first"].events == 1
    worse_again = scenario.steps["worse_again"]
    assert worse_again.decision.action == "unchanged" and "already rejected" in worse_again.decision.reason
    assert worse_again.events == scenario.steps["worse"].events


def test_a_better_candidate_is_promoted_and_the_old_champion_kept_for_rollback(scenario: Scenario) -> None:
    better = scenario.steps["better"]
    assert better.decision.action == "promoted"
    assert better.aliases[registry.CHAMPION] == scenario.trained
    assert better.aliases[registry.PREVIOUS_CHAMPION] == scenario.useless
    assert better.decision.candidate_value > 0.75 > better.decision.champion_value  # type: ignore[operator]
    assert better.decision.details["holdout"] == ["test"] and better.decision.details["rows"] > 4000
    assert better.served == scenario.trained


def test_a_worse_candidate_is_rejected_with_an_audit_row_and_the_champion_unchanged(scenario: Scenario) -> None:
    worse = scenario.steps["worse"]
    assert worse.decision.action == "rejected"
    assert worse.aliases[registry.CHAMPION] == scenario.trained
    assert worse.aliases[registry.CHALLENGER] == scenario.worse
    assert worse.served == scenario.trained
    row = scenario.events[worse.events - 1]
    assert row["action"] == "rejected" and row["version"] == scenario.worse
    assert row["previous_version"] == scenario.trained and row["metric"] == "roc_auc"
    assert row["candidate_value"] == pytest.approx(0.5) and row["champion_value"] > 0.75
    assert "does not beat" in row["reason"]


def test_rollback_restores_the_previous_champion_and_is_recorded(scenario: Scenario) -> None:
    rolled = scenario.steps["rollback"]
    assert rolled.decision.action == "rolled_back"
    assert rolled.aliases[registry.CHAMPION] == scenario.useless
    assert registry.PREVIOUS_CHAMPION not in rolled.aliases  # the restored version replaced nothing
    assert rolled.served == scenario.useless
    row = scenario.events[rolled.events - 1]
    assert (row["action"], row["version"], row["previous_version"]) == (
        "rolled_back",
        scenario.useless,
        scenario.trained,
    )


def test_a_rolled_back_version_is_not_promoted_again(scenario: Scenario) -> None:
    step = scenario.steps["rolled_back_candidate"]
    assert step.decision.action == "unchanged" and "rolled back" in step.decision.reason
    assert step.aliases[registry.CHAMPION] == scenario.useless
    assert step.events == scenario.steps["rollback"].events


def test_rollback_without_a_previous_champion_is_refused(scenario: Scenario) -> None:
    assert "nothing to roll back to" in scenario.rollback_error


def test_every_decision_is_one_audit_row(scenario: Scenario) -> None:
    assert [e["action"] for e in scenario.events] == ["promoted", "promoted", "rejected", "rolled_back"]
    assert all(e["model_name"] == scenario.events[0]["model_name"] and e["reason"] for e in scenario.events)


def test_an_unknown_holdout_part_is_named(scenario_settings: config.Settings, scenario: Scenario) -> None:
    with pytest.raises(promotion.DeployError, match="no prepared batch 'batch:winter'"):
        promotion.holdout_frame(scenario_settings, ["test", "batch:winter"])
    with pytest.raises(promotion.DeployError, match="'train' was used to fit"):
        promotion.holdout_frame(scenario_settings, ["train"])
    assert promotion.parse_holdout('["test", "batch:summer"]') == ["test", "batch:summer"]
    assert promotion.parse_holdout(None) == ["test"]
