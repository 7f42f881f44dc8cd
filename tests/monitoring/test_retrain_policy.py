"""How the retrain pipeline treats Grafana's webhook bodies: firing acts once, everything is recorded."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from mlops.core import config
from mlops.core.lifecycle import retrain

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


def test_a_failed_retrain_is_retried_by_the_same_alert_and_a_successful_one_is_not(
    fresh_settings: config.Settings,
) -> None:
    body = webhook("webhook-firing.json")
    body["alerts"][0]["fingerprint"] = "retry-after-failure"
    first = retrain.receive(fresh_settings, body)
    assert first.retrain
    with pytest.raises(FileNotFoundError):  # retraining fails: no batch of that name (or nothing prepared)
        retrain.retrain(fresh_settings, first.to_dict(), batches=["no-such-batch"])
    repeat = retrain.receive(fresh_settings, body)  # Grafana's repeat of the same alert instance
    assert repeat.retrain and repeat.alert_id != first.alert_id
    retrain.record_outcome(fresh_settings, repeat.alert_id, "version 9 promoted")  # this one succeeded
    assert not retrain.receive(fresh_settings, body).retrain
    rows = [r for r in retrain.alerts(fresh_settings) if r["fingerprint"] == "retry-after-failure"]
    assert [r["action"] for r in rows] == [retrain.FAILED, "retrain", "duplicate"]
    assert rows[0]["outcome"].startswith("failed while retraining: FileNotFoundError")


def test_a_body_over_the_size_limit_is_refused_and_not_stored(fresh_settings: config.Settings) -> None:
    body = webhook("webhook-firing.json")
    body["alerts"][0]["annotations"] = {"summary": "x" * fresh_settings.orchestration.max_webhook_bytes}
    with pytest.raises(retrain.AlertPayloadError, match=r"over orchestration\.max_webhook_bytes"):
        retrain.receive(fresh_settings, body)
    row = retrain.alerts(fresh_settings)[-1]
    assert row["action"] == "rejected" and row["payload"] == {"bytes": len(json.dumps(body).encode())}


def test_a_trigger_body_cannot_choose_the_configuration(
    fresh_settings: config.Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mage hands a trigger body's top-level keys to the blocks as kwargs: a `config` key must change nothing."""
    from mlops.data_loaders.receive_alert import receive_alert

    elsewhere = tmp_path / "elsewhere.db"
    chosen = yaml.safe_load((config.PACKAGE_ROOT / "configs" / "bank_marketing.yaml").read_text())
    chosen["stores"]["monitoring_db"] = f"sqlite:///{elsewhere}"
    (tmp_path / "chosen.yaml").write_text(yaml.safe_dump(chosen))
    monkeypatch.setenv("MLOPS_STORES__MONITORING_DB", fresh_settings.monitoring_db)  # the server's own
    body = webhook("webhook-firing.json")
    body["alerts"][0]["fingerprint"] = "config-in-the-body"
    receive_alert(**body, config=str(tmp_path / "chosen.yaml"))
    assert not elsewhere.exists()
    assert retrain.alerts(fresh_settings)[-1]["fingerprint"] == "config-in-the-body"


def test_retraining_by_hand_needs_no_alert_body(fresh_settings: config.Settings) -> None:
    """`python -m mlops run retrain` or Run@once in Mage: no Grafana body at all (#12, 10)."""
    assert retrain.webhook_body({"execution_date": None, "pipeline_run_id": None}) == {}
    decision = retrain.receive(fresh_settings, retrain.webhook_body({"execution_date": None}))
    assert decision.retrain and decision.alert_id is not None
    assert "by hand" in decision.reason
    row = retrain.alerts(fresh_settings)[-1]
    assert (row["id"], row["status"], row["action"]) == (decision.alert_id, retrain.BY_HAND, "retrain")
