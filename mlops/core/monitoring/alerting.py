"""The provisioned Grafana alert, evaluated without Grafana: its own SQL, macros expanded, against the DB.

Grafana (``grafana/provisioning``) evaluates the ``prediction_drift`` rule every minute. Where no Grafana
runs (the native demo, CI), :func:`evaluate` runs the very same queries from ``rules.yaml``: it expands the
Grafana macros the queries use (``$__timeFilter``, ``$__timeFrom``, ``$__timeTo``, ``$__timeGroupAlias``)
the way Grafana's PostgreSQL datasource does, runs them on the monitoring database, and applies the rule's
math condition. On SQLite the database is attached as ``monitoring`` so the schema-qualified SQL runs as is.

The rule is multi-dimensional, as Grafana evaluates tabular data: each row a query returns is one alert
instance, its text columns are the instance's labels and its one numeric column the value; the math
expression pairs rows with the same labels. The queries group by model (label ``model``), so models that
share one monitoring database alert apart, and :func:`evaluate` returns the configured model's instance.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from mlops.core.config import Settings
from mlops.core.monitoring import store

RULES_FILE = Path("grafana/provisioning/alerting/rules.yaml")
MODEL_LABEL = "model"  # the label the rule's queries give each row: the model it is about
_MACRO = re.compile(r"\$__(timeFilter|timeGroupAlias|timeGroup)\(([^)]*)\)|\$__(timeFrom|timeTo)\(\)")
_ENV = re.compile(r"\$\$|\$\{(\w+)\}|\$(\w+)")
_VARIABLE = re.compile(r"\$\{(\w+):sqlstring\}")
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_MATH = re.compile(r"^\s*\$(\w+)\s*(>=|<=|>|<)\s*(?:\$(\w+)|([-+0-9.eE]+))\s*$")


class AlertRuleError(ValueError):
    """The provisioned rule is missing or uses something this evaluator does not support."""


def interpolate_env(text: str, env: Mapping[str, str]) -> str:
    """Grafana's provisioning interpolation: ``${VAR}`` and ``$VAR`` from ``env``, ``$$`` for a literal ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(2)
        if name not in env:
            raise AlertRuleError(f"environment variable {name} is not set (used as {match.group(0)})")
        return env[name]

    return _ENV.sub(replace, text)


def _timestamp(moment: datetime, dialect: str) -> str:
    utc = moment.astimezone(UTC)
    # SQLite stores UTC timestamps as text 'YYYY-MM-DD HH:MM:SS.ffffff': compare in that form.
    return utc.strftime("%Y-%m-%d %H:%M:%S") if dialect == "sqlite" else utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(interval: str) -> int:
    found = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", interval)
    if not found:
        raise AlertRuleError(f"unsupported interval {interval!r} (use e.g. 30s, 5m, 1h, 1d)")
    return int(found.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[found.group(2)]


def expand_macros(sql: str, start: datetime, end: datetime, dialect: str = "postgresql") -> str:
    """Expand Grafana's SQL macros for the time range ``[start, end]``, as its PostgreSQL datasource does."""
    begin, finish = _timestamp(start, dialect), _timestamp(end, dialect)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        args = [a.strip() for a in (match.group(2) or "").split(",")]
        if name == "timeFilter":
            return f"{args[0]} BETWEEN '{begin}' AND '{finish}'"
        if name == "timeFrom":
            return f"'{begin}'"
        if name == "timeTo":
            return f"'{finish}'"
        if dialect != "postgresql":
            raise AlertRuleError(f"$__{name} is only expanded for PostgreSQL")
        step = _seconds(args[1])
        grouped = f"floor(extract(epoch from {args[0]})/{step})*{step}"
        return f'{grouped} AS "time"' if name == "timeGroupAlias" else grouped

    expanded = _MACRO.sub(replace, sql)
    if "$__" in expanded:
        raise AlertRuleError(f"unsupported Grafana macro in: {expanded[expanded.index('$__') :][:40]}")
    return expanded


def expand_variables(sql: str, variables: Mapping[str, str]) -> str:
    """A dashboard's template variables written ``${name:sqlstring}``, quoted as Grafana quotes them."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise AlertRuleError(f"no value for the dashboard variable {name!r}")
        return "'" + variables[name].replace("'", "''") + "'"

    return _VARIABLE.sub(replace, sql)


@dataclass(frozen=True)
class AlertRule:
    title: str
    uid: str
    condition: str
    queries: dict[str, str]  # refId -> SQL (with Grafana macros)
    window_seconds: int
    math: dict[str, str]  # refId -> math expression
    no_data_state: str


def load_rule(settings: Settings, name: str | None = None) -> AlertRule:
    """The provisioned rule titled ``name`` (default: ``monitoring.alert_name``)."""
    path = settings.resolve(RULES_FILE)
    wanted = name or settings.monitoring.alert_name
    document = yaml.safe_load(path.read_text())
    for group in document.get("groups", []):
        for rule in group.get("rules", []):
            if rule.get("title") != wanted:
                continue
            queries, maths, window = {}, {}, 0
            for item in rule["data"]:
                model = item["model"]
                if model.get("type") == "math":
                    maths[item["refId"]] = model["expression"]
                elif "rawSql" in model:
                    queries[item["refId"]] = model["rawSql"]
                    window = max(window, int(item["relativeTimeRange"]["from"]))
                else:
                    raise AlertRuleError(f"{path}: query {item['refId']} is neither SQL nor a math expression")
            return AlertRule(
                wanted, rule["uid"], rule["condition"], queries, window, maths, rule.get("noDataState", "NoData")
            )
    raise AlertRuleError(f"{path} has no alert rule titled {wanted!r}")


@dataclass
class AlertEvaluation:
    """One alert instance: the rule's verdict for the model its labels name."""

    rule: str
    state: str  # Alerting, Normal, or the rule's no-data state
    values: dict[str, float | None]
    window: tuple[datetime, datetime]
    sql: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def firing(self) -> bool:
        return self.state == "Alerting"


def _connect(conn: sa.Connection, url: str) -> None:
    if conn.dialect.name == "sqlite":
        database = sa.make_url(url).database
        if not database or database == ":memory:":
            raise AlertRuleError("the alert check needs a file-backed SQLite database")
        conn.exec_driver_sql("ATTACH DATABASE ? AS monitoring", (database,))


Labels = frozenset[tuple[str, str]]


def _instances(conn: sa.Connection, sql: str, ref: str) -> dict[Labels, float | None]:
    """Each row's labels (its text columns) and value (its one other column), as Grafana reads a table."""
    found: dict[Labels, float | None] = {}
    for row in conn.execute(sa.text(sql)).mappings():
        labels = frozenset((k, v) for k, v in row.items() if isinstance(v, str))
        numbers = [v for v in row.values() if not isinstance(v, str)]
        if len(numbers) != 1:
            raise AlertRuleError(f"query {ref} must return one numeric column per row, got {len(numbers)}: {dict(row)}")
        if labels in found:
            raise AlertRuleError(f"query {ref} returned two rows labelled {dict(labels)}")
        found[labels] = None if numbers[0] is None else float(numbers[0])
    return found


def _value(instances: Mapping[Labels, float | None], labels: Labels) -> float | None:
    """The instance with these labels; a row with no labels at all stands for every instance (as in Grafana)."""
    return instances.get(labels, instances.get(frozenset()))


def _math(expression: str, values: Mapping[str, float | None]) -> bool | None:
    found = _MATH.match(expression)
    if not found:
        raise AlertRuleError(f"unsupported math expression {expression!r} (supported: $A > $B, $A > 0.1)")
    left = values.get(found.group(1))
    right = values.get(found.group(3)) if found.group(3) else float(found.group(4))
    if left is None or right is None or math.isnan(left) or math.isnan(right):
        return None
    return _COMPARE[found.group(2)](left, right)


def evaluate(settings: Settings, now: datetime | None = None, migrate: bool = True) -> AlertEvaluation:
    """Evaluate the provisioned alert rule against ``settings.monitoring_db`` as Grafana would, for the
    configured model's instance (label ``model`` = ``training.model_name``).

    ``migrate=False`` reads only, as Grafana's read-only role must (it may not create the schema's tables)."""
    rule = load_rule(settings)
    # Grafana's range is whole seconds: round the end up so that a run written this second is inside it.
    end = (now or datetime.now(UTC)).replace(microsecond=0) + timedelta(seconds=1)
    start = end - timedelta(seconds=rule.window_seconds)
    url = settings.monitoring_db
    if migrate:
        store.migrate(url)
    eng = sa.create_engine(store.normalise_url(url))
    labels = {MODEL_LABEL: settings.training.model_name}
    values: dict[str, float | None] = {}
    expanded: dict[str, str] = {}
    try:
        with eng.connect() as conn:
            _connect(conn, url)
            for ref, sql in rule.queries.items():
                expanded[ref] = expand_macros(sql, start, end, conn.dialect.name)
                values[ref] = _value(_instances(conn, expanded[ref], ref), frozenset(labels.items()))
    finally:
        eng.dispose()
    if rule.condition not in rule.math:
        raise AlertRuleError(f"the rule's condition {rule.condition} must be a math expression")
    verdict = _math(rule.math[rule.condition], values)
    if verdict is None:
        state = "Normal" if rule.no_data_state == "OK" else rule.no_data_state
    else:
        state = "Alerting" if verdict else "Normal"
        values[rule.condition] = float(verdict)
    return AlertEvaluation(rule.title, state, values, (start, end), expanded, labels)


def describe(evaluation: AlertEvaluation) -> dict[str, Any]:
    return {
        "rule": evaluation.rule,
        "labels": evaluation.labels,
        "state": evaluation.state,
        "firing": evaluation.firing,
        "values": evaluation.values,
        "window": [evaluation.window[0].isoformat(), evaluation.window[1].isoformat()],
    }


def notification(evaluation: AlertEvaluation, rule_uid: str = "prediction-drift") -> dict[str, Any]:
    """The webhook body Grafana would send for this evaluation (used where no Grafana runs)."""
    status = "firing" if evaluation.firing else "resolved"
    started = evaluation.window[1].strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = {"alertname": evaluation.rule, **evaluation.labels, "source": "alert-check"}
    values = {k: v for k, v in evaluation.values.items() if v is not None}
    instance = ",".join(f"{k}={v}" for k, v in sorted(evaluation.labels.items()))
    return {
        "receiver": "mage-retrain",
        "status": status,
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "startsAt": started,
                "fingerprint": f"{rule_uid}-local" + (f"-{instance}" if instance else ""),
                "values": values,
            }
        ],
        "groupKey": f'{{}}:{{alertname="{evaluation.rule}"}}',
        "commonLabels": labels,
    }
