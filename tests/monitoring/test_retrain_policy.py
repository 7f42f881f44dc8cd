"""How the retrain pipeline treats Grafana's webhook bodies: firing acts once, everything is recorded."""

from __future__ import annotations

import copy

import pytest

from mlops.core import config, retrain

from .conftest import webhook

pytestmark = [pytest.mark.postgres]


def test_firing_acts_once_resolved_and_replays_do_nothing(fresh_settings: config.Settings) -> None:
    firing, resolved = webhook("webhook-firing.json"), webhook("webhook-resolved.json")

    first = retrain.receive(fresh_settings, firing)
    assert first.retrain and first.alert_id is not None

    assert not retrain.receive(fresh_settings, firing).retrain  # Grafana's repeat: same fingerprint + startsAt
    assert not retrain.receive(fresh_settings, resolved).retrain
    other = copy.deepcopy(firing)
    other["alerts"][0]["labels"]["alertname"] = "DatasourceError"
    other["alerts"][0]["fingerprint"] = "ffff"
    assert not retrain.receive(fresh_settings, other).retrain

    later = copy.deepcopy(firing)  # the alert resolved and fired again: a new instance
    later["alerts"][0]["startsAt"] = "2026-11-21T08:00:00Z"
    assert retrain.receive(fresh_settings, later).retrain

    rows = retrain.alerts(fresh_settings)
    assert [(r["status"], r["action"]) for r in rows] == [
        ("firing", "retrain"),
        ("firing", "duplicate"),
        ("resolved", "ignored"),
        ("firing", "ignored"),
        ("firing", "retrain"),
    ]
    assert rows[1]["outcome"] == f"already handled by alert record {rows[0]['id']}"
    assert rows[0]["fingerprint"] == "a1b2c3d4e5f60718" and rows[0]["group_key"] == firing["groupKey"]


def test_without_fingerprints_the_group_key_dedupes(fresh_settings: config.Settings) -> None:
    body = webhook("webhook-firing.json")
    body["groupKey"] = '{}/{}:{alertname="prediction_drift", test="group-key"}'
    body["alerts"][0].pop("fingerprint")
    body["alerts"][0]["startsAt"] = "2026-11-22T09:00:00Z"
    assert retrain.receive(fresh_settings, body).retrain
    assert not retrain.receive(fresh_settings, body).retrain


def test_a_body_that_is_not_an_alert_is_refused_and_recorded(fresh_settings: config.Settings) -> None:
    with pytest.raises(retrain.AlertPayloadError, match="alerts"):
        retrain.receive(fresh_settings, {"status": "firing", "message": "no alerts list"})
    assert retrain.alerts(fresh_settings)[-1]["action"] == "rejected"


def test_mage_kwargs_give_the_webhook_body() -> None:
    body = webhook("webhook-firing.json")
    assert retrain.webhook_body({"event": body, "status": "firing"}) == body  # API trigger on the server
    top_level = retrain.webhook_body({**body, "execution_date": None})  # mage run --runtime-vars <body>
    assert top_level["alerts"] == body["alerts"] and top_level["groupKey"] == body["groupKey"]
