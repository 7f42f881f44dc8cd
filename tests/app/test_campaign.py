"""The campaign planner's arithmetic and the importance roll-up, on small cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mlops.core.lifecycle import campaign
from mlops.core.monitoring import insights

# 10 clients, 2 subscribers; the model ranks them 1st and 4th.
Y = np.array([1, 0, 0, 1, 0, 0, 0, 0, 0, 0])
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])


def test_top_n_by_score_versus_n_at_random() -> None:
    plan = campaign.plan(Y, SCORES, calls=2)
    assert (plan.by_model, plan.at_random, plan.positives, plan.population) == (1, 0.4, 2, 10)
    assert plan.lift == pytest.approx(2.5)
    assert plan.share_found == 0.5
    assert plan.model_expected == pytest.approx(1.7)
    assert campaign.plan(Y, SCORES, calls=4).by_model == 2
    assert campaign.plan(Y, SCORES, calls=10).lift == pytest.approx(1.0)  # calling everyone is no better


def test_the_list_order_does_not_depend_on_the_row_order() -> None:
    order = np.random.default_rng(0).permutation(len(Y))
    assert campaign.plan(Y[order], SCORES[order], calls=3) == campaign.plan(Y, SCORES, calls=3)


def test_gain_and_lift_curves() -> None:
    curve = campaign.gain_curve(Y, SCORES)
    assert curve["calls"].tolist() == list(range(11))
    assert curve["gain"].tolist() == [0, 0.5, 0.5, 0.5, 1, 1, 1, 1, 1, 1, 1]
    assert curve["random_gain"].tolist() == pytest.approx(np.arange(11) / 10)
    assert np.isnan(curve["lift"].iloc[0])
    assert curve["lift"].iloc[1] == pytest.approx(5.0)
    assert curve["lift"].iloc[-1] == pytest.approx(1.0)
    big = campaign.gain_curve(np.tile(Y, 1000), np.tile(SCORES, 1000), points=50)
    assert len(big) == 51 and big["gain"].is_monotonic_increasing


@pytest.mark.parametrize("calls", [0, 11, -1])
def test_a_budget_outside_the_population_is_refused(calls: int) -> None:
    with pytest.raises(ValueError, match="between 1 and the 10 clients"):
        campaign.plan(Y, SCORES, calls=calls)


def test_labels_and_scores_must_match() -> None:
    with pytest.raises(ValueError, match="same length"):
        campaign.plan(Y, SCORES[:5], calls=1)


def test_one_hot_importances_are_summed_back_to_their_feature() -> None:
    importance = {"num__age": 0.2, "cat__job_admin.": 0.1, "cat__job_blue-collar": 0.3, "cat__job_title_x": 0.05}
    rolled = insights.importance_by_feature(importance, ["age", "job", "job_title", "loan"])
    assert rolled == pytest.approx({"job": 0.4, "age": 0.2, "job_title": 0.05, "loan": 0.0})
    assert list(rolled) == ["job", "age", "job_title", "loan"]
