"""Grafana's provisioning files parse, agree with each other and with the platform's configuration."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from mlops.core import config
from mlops.core.monitoring import alerting
from mlops.core.platform import orchestration

from .conftest import GRAFANA, ROOT, load_provisioning

ENV_REF = re.compile(r"^\$\{\w+\}$")


def test_every_provisioning_file_parses() -> None:
    files = sorted(p for p in GRAFANA.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
    assert {p.relative_to(GRAFANA).as_posix() for p in files} >= {
        "provisioning/datasources/postgres.yaml",
        "provisioning/dashboards/provider.yaml",
        "provisioning/alerting/rules.yaml",
        "provisioning/alerting/contact-points.yaml",
        "provisioning/alerting/policies.yaml",
        "dashboards/model-monitoring.json",
    }
    for path in files:
        assert load_provisioning(path.relative_to(GRAFANA).as_posix()), f"{path} is empty"


def test_datasource_has_a_fixed_uid_and_credentials_from_the_environment() -> None:
    (source,) = load_provisioning("provisioning/datasources/postgres.yaml")["datasources"]
    assert source["uid"] == "mlops-monitoring"
    assert source["type"] == "grafana-postgresql-datasource"
    for value in (source["url"], source["user"], source["jsonData"]["database"], source["secureJsonData"]["password"]):
        assert ENV_REF.match(value), f"{value!r} is not taken from the environment"


def test_no_default_admin_password_anywhere() -> None:
    text = "\n".join(p.read_text() for p in GRAFANA.rglob("*") if p.is_file())
    assert "admin_password" not in text and "GF_SECURITY_ADMIN_PASSWORD" not in text
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "GF_SECURITY_ADMIN_PASSWORD: ${GRAFANA_ADMIN_PASSWORD:?" in compose  # compose refuses an empty one


def test_alert_rule_matches_the_configuration(settings: config.Settings) -> None:
    rule = alerting.load_rule(settings)
    assert rule.title == settings.monitoring.alert_name
    assert rule.no_data_state == "OK"
    assert set(rule.queries) == {"A", "B"} and rule.math == {"C": "$A > $B"} and rule.condition == "C"
    raw = load_provisioning("provisioning/alerting/rules.yaml")["groups"][0]["rules"][0]
    assert {d["datasourceUid"] for d in raw["data"] if d["refId"] in rule.queries} == {"mlops-monitoring"}
    assert raw["dashboardUid"] == load_provisioning("dashboards/model-monitoring.json")["uid"]


def test_the_alert_is_one_instance_per_model_and_says_nothing_of_one_dataset(settings: config.Settings) -> None:
    """Two models in one monitoring database must not mix (#12): the rule's queries label each row with its
    model (Grafana makes each row an alert instance), notifications are grouped by model, and no provisioning
    file names the worked example's dataset."""
    raw = load_provisioning("provisioning/alerting/rules.yaml")["groups"][0]
    (rule,) = raw["rules"]
    assert alerting.MODEL_LABEL not in rule.get("labels", {})  # a fixed label would stamp every instance alike
    for sql in alerting.load_rule(settings).queries.values():
        assert f"model_name AS {alerting.MODEL_LABEL}" in sql and "GROUP BY r.model_name" in sql
    (policy,) = load_provisioning("provisioning/alerting/policies.yaml")["policies"]
    assert alerting.MODEL_LABEL in policy["group_by"]
    for path in GRAFANA.rglob("*"):
        if path.is_file():
            assert "bank" not in path.read_text().lower(), f"{path} names the bank dataset"


def test_every_dashboard_query_is_scoped_by_the_model_variable() -> None:
    dashboard = load_provisioning("dashboards/model-monitoring.json")
    (variable,) = dashboard["templating"]["list"]
    assert variable["name"] == "model" and variable["type"] == "query" and not variable["includeAll"]
    assert variable["datasource"]["uid"] == "mlops-monitoring" and "model_name" in variable["query"]
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert "= ${model:sqlstring}" in target["rawSql"], f"panel {panel['id']} ({panel['title']}) is not scoped"


def test_webhook_contact_point_is_the_retrain_trigger(settings: config.Settings) -> None:
    (point,) = load_provisioning("provisioning/alerting/contact-points.yaml")["contactPoints"]
    (receiver,) = point["receivers"]
    assert receiver["type"] == "webhook"
    token = "t0ken-from-the-environment"
    assert token not in receiver["settings"]["url"]
    url = alerting.interpolate_env(
        receiver["settings"]["url"],
        {"MAGE_URL": settings.orchestration.mage_url, "MLOPS_SECRETS__RETRAIN_TOKEN": token},
    )
    with_token = settings.model_copy(update={"secrets": config.Secrets(retrain_token=token)})
    assert url == orchestration.retrain_trigger_url(with_token)


def test_notification_policy_cannot_loop_retrains() -> None:
    (policy,) = load_provisioning("provisioning/alerting/policies.yaml")["policies"]
    points = {p["name"] for p in load_provisioning("provisioning/alerting/contact-points.yaml")["contactPoints"]}
    assert policy["receiver"] in points
    hours = {"h": 1, "d": 24}
    value = policy["repeat_interval"]
    assert value[-1] in hours and int(value[:-1]) * hours[value[-1]] >= 12, value


def test_dashboard_panels_use_the_datasource_and_cover_the_issue() -> None:
    dashboard = load_provisioning("dashboards/model-monitoring.json")
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("quality", "drifted columns", "prediction drift", "missing", "volume", "score", "pipeline", "alert"):
        assert topic in titles, f"no panel about {topic}"
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "mlops-monitoring"
    drift = next(p for p in dashboard["panels"] if p["id"] == 4)  # Grafana's webhook links viewPanel=4
    assert "prediction drift" in drift["title"].lower()
    assert '"alert threshold"' in drift["targets"][0]["rawSql"]  # the configured threshold, from the runs
    share = next(p for p in dashboard["panels"] if "drifted columns" in p["title"].lower())
    assert share["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"


def test_retrain_trigger_is_declared_without_its_token() -> None:
    path = ROOT / "mlops" / "pipelines" / "retrain" / "triggers.yaml"
    (trigger,) = yaml.safe_load(path.read_text())["triggers"]
    assert trigger["name"] == orchestration.RETRAIN_TRIGGER_NAME
    assert trigger["schedule_type"] == "api" and trigger["schedule_interval"] is None
    assert trigger["status"] == "active" and trigger["last_enabled_at"] and trigger["start_time"]
    assert "token" not in trigger


def test_macro_and_environment_expansion_follow_grafana() -> None:
    from datetime import UTC, datetime

    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    sql = alerting.expand_macros("WHERE $__timeFilter(t) AND x > $__timeFrom()", start, end)
    assert sql == "WHERE t BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-02T00:00:00Z' AND x > '2026-01-01T00:00:00Z'"
    assert alerting.interpolate_env("a$$b ${X}/$Y", {"X": "1", "Y": "2"}) == "a$b 1/2"
    assert alerting.expand_variables("m = ${model:sqlstring}", {"model": "o'hara"}) == "m = 'o''hara'"
    assert Path(GRAFANA / "provisioning" / "dashboards" / "provider.yaml").is_file()
