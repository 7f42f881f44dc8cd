"""The platform's one configuration: a YAML file plus ``MLOPS_*`` environment overrides.

``MLOPS_CONFIG`` names the file (default ``configs/bank_marketing.yaml``); ``MLOPS_ROOT`` the folder
relative paths are resolved against (default: the repository holding this package). Any key can be
overridden as ``MLOPS_<SECTION>__<KEY>`` (double underscore between levels); values are parsed as YAML
scalars, so ``MLOPS_TRAINING__SEARCH__MAX_TRIALS=5`` is an integer.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlops.core import families

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = Path("configs/bank_marketing.yaml")
ENV_PREFIX = "MLOPS_"
# Environment variables with the prefix that are not configuration keys: the file, the root, and the
# test harness's own namespace (MLOPS_TEST_*, e.g. MLOPS_TEST_FAIL_ON_SKIP set by `make test`).
# The Docker engine `python -m mlops images` starts keeps its store and socket where these say (container_engine).
RESERVED_ENV = {"MLOPS_CONFIG", "MLOPS_ROOT", "MLOPS_DOCKER_DATA_ROOT", "MLOPS_DOCKER_RUN_DIR"}
RESERVED_PREFIX = "MLOPS_TEST_"


class ConfigError(ValueError):
    """The configuration file or an override is invalid; the message names the key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(Strict):
    work_dir: Path = Path(".mlops")
    data_dir: Path = Path("data")


class Stores(Strict):
    tracking_uri: str = "sqlite:///.mlops/mlflow.db"
    artifact_location: str = ".mlops/mlartifacts"
    experiment: str = "default"
    monitoring_db: str = "sqlite:///.mlops/monitoring.db"


class Source(Strict):
    path: Path | None = None
    url: str | None = None
    separator: str = ","


class ExcludedColumn(Strict):
    reason: str
    post_outcome: bool = False


Bound = datetime | date | float | str  # a date/time (YAML dates arrive as dates) or a number


class Range(Strict):
    """Rows whose split-column value is at least ``start`` and below ``end`` (either may be left open)."""

    start: Bound | None = None
    end: Bound | None = None

    @model_validator(mode="after")
    def _check_bounds(self) -> Range:
        if self.start is None and self.end is None:
            raise ValueError("a range needs `start`, `end` or both")
        return self


class Split(Strict):
    # column: batches by listed values of `column`; range: by ranges of a date or number column;
    # random: batches of random rows
    strategy: Literal["column", "range", "random"] = "random"
    column: str | None = None
    reference: list[str] | Range = Field(default_factory=list)
    # column: batch name -> values of `column`; range: batch name -> range; random: batch name -> share of rows
    batches: dict[str, list[str] | Range | float] = Field(default_factory=dict)
    # range: the rows after the reference, one batch per calendar period (named by it, e.g. 2024-07)
    batch_period: Literal["day", "week", "month", "quarter", "year"] | None = None
    validation_size: float = Field(0.2, gt=0, lt=1)
    test_size: float = Field(0.2, gt=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _check_strategy(self) -> Split:
        if self.validation_size + self.test_size >= 1:
            raise ValueError("validation_size + test_size must be below 1")
        if self.batch_period is not None and self.strategy != "range":
            raise ValueError("batch_period needs strategy 'range'")
        if self.strategy == "column":
            if not self.column or not isinstance(self.reference, list) or not self.reference:
                raise ValueError("strategy 'column' needs `column` and a list of `reference` values")
            for name, values in self.batches.items():
                if not isinstance(values, list):
                    raise ValueError(f"batch {name!r}: strategy 'column' takes a list of values")
        elif self.strategy == "range":
            if not self.column or not isinstance(self.reference, Range):
                raise ValueError("strategy 'range' needs `column` and a `reference` range (start and/or end)")
            for name, bounds in self.batches.items():
                if not isinstance(bounds, Range):
                    raise ValueError(f"batch {name!r}: strategy 'range' takes a range (start and/or end)")
            if self.batch_period is not None and self.batches:
                raise ValueError("strategy 'range' takes `batches` or `batch_period`, not both")
            if self.batch_period is not None and self.reference.end is None:
                raise ValueError("batch_period needs the reference's `end`: the batches are the periods after it")
        else:
            for name, share in self.batches.items():
                if not isinstance(share, float) or not 0 < share < 1:
                    raise ValueError(f"batch {name!r}: strategy 'random' takes a share between 0 and 1")
            if sum(float(share) for share in self.batches.values() if isinstance(share, float)) >= 1:
                raise ValueError("the random batches' shares must leave rows for the reference")
        return self


class Leakage(Strict):
    max_single_feature_auc: float = Field(0.75, gt=0.5, le=1.0)


class Dataset(Strict):
    name: str
    source: Source
    target: str
    positive_label: str
    labels: list[str]
    numerical: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    # numerical columns that may be empty (categorical ones always may: empty is its own category)
    nullable_numerical: list[str] = Field(default_factory=list)
    excluded: dict[str, ExcludedColumn] = Field(default_factory=dict)
    split: Split = Split()
    leakage: Leakage = Leakage()

    @field_validator("positive_label", mode="before")
    @classmethod
    def _label_as_text(cls, value: Any) -> str:
        return str(value)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, value: Any) -> list[str]:
        return [str(v) for v in value]

    @model_validator(mode="after")
    def _check_columns(self) -> Dataset:
        if self.positive_label not in self.labels:
            raise ValueError(f"positive_label {self.positive_label!r} is not one of labels {self.labels}")
        if len(self.labels) != 2:
            raise ValueError(f"labels must name exactly two classes, got {self.labels}")
        if not self.features:
            raise ValueError("no features: list `numerical` and/or `categorical` columns")
        seen: dict[str, str] = {}
        for group, cols in (
            ("numerical", self.numerical),
            ("categorical", self.categorical),
            ("excluded", list(self.excluded)),
            ("target", [self.target]),
        ):
            for col in cols:
                if col in seen:
                    raise ValueError(f"column {col!r} is listed both as {seen[col]} and as {group}")
                seen[col] = group
        unknown = set(self.nullable_numerical) - set(self.numerical)
        if unknown:
            raise ValueError(f"nullable_numerical names non-numerical columns: {sorted(unknown)}")
        if self.split.strategy in ("column", "range") and self.split.column not in seen:
            raise ValueError(f"split column {self.split.column!r} is not a column of the dataset")
        return self

    @property
    def features(self) -> list[str]:
        return [*self.numerical, *self.categorical]

    @property
    def columns(self) -> list[str]:
        """Every column the raw file must have."""
        return [*self.features, *self.excluded, self.target]


class Search(Strict):
    time_budget_seconds: float = Field(60, gt=0)
    max_trials: int = Field(40, ge=1)


class Threshold(Strict):
    strategy: Literal["f1", "cost"] = "f1"
    false_positive_cost: float = Field(1.0, ge=0)
    false_negative_cost: float = Field(5.0, ge=0)


class Training(Strict):
    model_name: str
    families: list[str] = Field(default_factory=lambda: list(families.FAMILIES))  # mlops.core.families
    selection_metric: Literal["roc_auc", "pr_auc"] = "roc_auc"
    search: Search = Search()
    threshold: Threshold = Threshold()
    lift_fraction: float = Field(0.10, gt=0, le=1)
    seed: int = 42
    n_jobs: int = Field(2, ge=1)

    @field_validator("families")
    @classmethod
    def _known_families(cls, value: list[str]) -> list[str]:
        for name in value:
            families.get(name)  # raises, naming the known ones
        if not value:
            raise ValueError("name at least one model family")
        return value


class Demo(Strict):
    """``make demo``: the whole loop in minutes, with a small search budget (``run train`` keeps training's)."""

    search: Search = Search(time_budget_seconds=6, max_trials=6)


class Serving(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    url: str = "http://127.0.0.1:8080"  # where pipelines and the app reach the predictor
    workers: int = Field(2, ge=1)
    # gthread: each worker reads requests on a pool of threads, so a client that sends its body slowly holds
    # one thread, not the worker (docs/reliability.md, "Slow clients"); sync: one request per worker at a time
    worker_class: Literal["gthread", "sync"] = "gthread"
    threads: int = Field(64, ge=1)  # per worker (gthread)
    # gthread: how long an idle connection stays open for the client's next request (0: one request each)
    keepalive_seconds: int = Field(5, ge=0)
    payload_dir: Path = Path("build/predictor")  # what deploy generates and the predictor runs from
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    max_batch_rows: int = Field(100_000, ge=1)
    max_text_length: int = Field(256, ge=1)  # characters of a free-text (open) category; longer answers 422
    log_batch_size: int = Field(500, ge=1)  # prediction-log rows written per database round trip
    log_flush_seconds: float = Field(1.0, gt=0)
    spool_dir: Path = Path(".mlops/spool")  # where the prediction log waits while the database is down


class Deploy(Strict):
    metric: Literal["roc_auc", "pr_auc"] = "roc_auc"  # compared on the same held-out test split
    min_improvement: float = Field(0.0, ge=0)  # a candidate must beat the champion by more than this
    # Natively, deploy starts the predictor when none answers at serving.url; compose runs its own.
    start_predictor: bool = True


class Monitoring(Strict):
    # The prediction-drift alert's threshold: this, or noise_multiplier x the drift a same-population sample of
    # the batch's size shows for the champion, whichever is higher (drift_reference)
    prediction_drift_threshold: float = Field(0.1, gt=0)
    noise_multiplier: float = Field(3.0, gt=0)
    noise_samples: int = Field(20, ge=2)
    alert_name: str = "prediction_drift"
    reports_dir: Path = Path(".mlops/reports/evidently")
    # Batches whose labels have arrived: retrain learns from them (None: every configured batch).
    labeled_batches: list[str] | None = None


class Orchestration(Strict):
    mage_url: str = "http://127.0.0.1:6789"
    retrain_schedule_id: int = Field(1, ge=1)  # pinned id of the retrain pipeline's API trigger
    max_webhook_bytes: int = Field(1024 * 1024, ge=1024)  # a larger alert body is refused, not stored
    mage_owner_email: str = "owner@mlops.local"  # Mage's login (its password: secrets.mage_owner_password)


class Stack(Strict):
    """``python -m mlops up``: ports of the local services (the predictor's is serving.port, Mage's is in
    orchestration.mage_url) and where the stores live."""

    # auto: the system PostgreSQL binaries if usable, else an embedded server; sqlite: no server at all
    database: Literal["auto", "postgres", "embedded", "sqlite"] = "auto"
    postgres_port: int = Field(5433, ge=1, le=65535)  # beside, not on, a system server's 5432
    mlflow_port: int = Field(5000, ge=1, le=65535)
    streamlit_port: int = Field(8501, ge=1, le=65535)
    grafana_port: int = Field(3000, ge=1, le=65535)


class Secrets(Strict):
    """Never in a file: set them from the environment (``MLOPS_SECRETS__RELOAD_TOKEN=...``)."""

    reload_token: str | None = None  # the predictor's state-changing endpoints
    retrain_token: str | None = None  # the retrain pipeline's API trigger
    mage_owner_password: str | None = None  # Mage's owner login (Mage's own API and UI need it)


class Presentation(Strict):
    """The app's words for this table's rows, outcome and decision; neutral unless the configuration names them."""

    title: str | None = None  # the front page's title (default: the dataset's name)
    description: str = "A model trained on past outcomes scores how likely each row is to be positive."
    row: str = "row"  # one row of the table (the bank's: client)
    rows: str = "rows"
    positives: str = "positive rows"  # rows with the positive outcome (subscribers)
    outcomes: str = "positive outcomes"  # the outcomes counted (subscriptions)
    probability: str = "Probability of the positive outcome"  # (Probability of subscribing)
    action: str = "act"  # what a positive decision says to do (call)
    no_action: str = "do not act"
    actions: str = "actions"  # the campaign planner's budget unit (calls)


class Settings(Strict):
    project: str
    paths: Paths = Paths()
    stores: Stores = Stores()
    dataset: Dataset
    training: Training
    demo: Demo = Demo()
    serving: Serving = Serving()
    deploy: Deploy = Deploy()
    monitoring: Monitoring = Monitoring()
    orchestration: Orchestration = Orchestration()
    stack: Stack = Stack()
    secrets: Secrets = Secrets()
    presentation: Presentation = Presentation()
    root: Path = PACKAGE_ROOT
    source_file: Path | None = None

    def resolve(self, path: Path | str) -> Path:
        """An absolute path: relative ones are taken from the project root."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.root / p)

    @property
    def work_dir(self) -> Path:
        return self.resolve(self.paths.work_dir)

    @property
    def prepared_dir(self) -> Path:
        """Where the prepare pipeline writes the splits, batches and reports of this dataset."""
        return self.work_dir / "datasets" / self.dataset.name

    @property
    def reports_dir(self) -> Path:
        """Where pipelines leave their human-readable results (leaderboard, decisions)."""
        return self.work_dir / "reports" / self.dataset.name

    @property
    def tracking_uri(self) -> str:
        return resolve_store_url(self.stores.tracking_uri, self.root)

    @property
    def monitoring_db(self) -> str:
        return resolve_store_url(self.stores.monitoring_db, self.root)

    @property
    def artifact_location(self) -> str:
        loc = self.stores.artifact_location
        return loc if "://" in loc else self.resolve(loc).as_uri()


def resolve_store_url(url: str, root: Path) -> str:
    """Make a relative ``sqlite:///`` URL absolute against the project root; other URLs pass through."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return prefix + str(root / url[len(prefix) :])
    return url


def _set_path(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def env_overrides(environ: dict[str, str] | os._Environ[str]) -> dict[str, Any]:
    """``MLOPS_A__B=v`` -> ``{"a": {"b": v}}`` with ``v`` parsed as a YAML scalar."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV or name.startswith(RESERVED_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__") if k]
        if not keys:
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        if isinstance(value, dict) and not raw.lstrip().startswith("{"):
            value = raw  # "Churn: who to keep" is text; a mapping is written in flow style, {a: 1}
        _set_path(tree, keys, value)
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if value and isinstance(value, dict) and isinstance(out.get(key), dict):  # an empty mapping clears
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def config_path(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    root = Path(env.get("MLOPS_ROOT", PACKAGE_ROOT))
    chosen = Path(path or env.get("MLOPS_CONFIG") or DEFAULT_CONFIG).expanduser()
    return chosen if chosen.is_absolute() else root / chosen


def load(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read the configuration file, apply environment overrides, validate, and return the settings."""
    env = dict(os.environ if environ is None else environ)
    file = config_path(path, env)
    if not file.is_file():
        raise ConfigError(f"configuration file not found: {file} (set MLOPS_CONFIG to a YAML file)")
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: the top level must be a mapping")
    merged = _merge(raw, env_overrides(env))
    merged["root"] = Path(env.get("MLOPS_ROOT", PACKAGE_ROOT)).resolve()
    merged["source_file"] = file
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{file}: {problems}") from exc
