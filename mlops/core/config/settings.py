"""Every section of the configuration and ``Settings``, the whole of it, with the paths derived from it.

Every path and store defaults to a place under ``paths.work_dir`` (``.mlops``): set the work dir alone and the
MLflow store, the monitoring database, the prediction-log spool and the drift reports follow it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlops.core import families
from mlops.core.config.dataset import Dataset, Strict

PACKAGE_ROOT = Path(__file__).resolve().parents[3]


class Paths(Strict):
    work_dir: Path = Path(".mlops")
    data_dir: Path = Path("data")


class Stores(Strict):
    """Every store is a URL; left out, each is a SQLite file or folder under the work dir."""

    tracking_uri: str | None = None  # MLflow: sqlite:///... or http://mlflow:5000 (default <work_dir>/mlflow.db)
    artifact_location: str | None = None  # a folder or URL (default <work_dir>/mlartifacts)
    experiment: str = "default"
    monitoring_db: str | None = None  # SQLAlchemy URL (default sqlite:///<work_dir>/monitoring.db)
    # MLflow's UI as the user's browser opens it, for links the UIs print (compose: http://127.0.0.1:5000, not
    # the service name the containers use); default: the tracking URI when it is an http(s) server
    ui_url: str | None = None


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
    # onehot: a 0/1 column per category (every family); native: a code per category variable, which the tree
    # libraries split on as categories (xgboost, hist_gradient_boosting): far less memory on millions of rows
    categorical_encoding: Literal["onehot", "native"] = "onehot"
    # compute.engine: spark trains xgboost (xgboost.spark) at these parameters: no search, each trial would be a
    # job over the whole table
    spark_params: dict[str, float | int] = Field(
        default_factory=lambda: {"n_estimators": 150, "max_depth": 6, "learning_rate": 0.1}
    )

    @model_validator(mode="after")
    def _families_take_codes(self) -> Training:
        if self.categorical_encoding == "native":
            unable = [name for name in self.families if name not in families.native_categorical()]
            if unable:
                raise ValueError(
                    f"categorical_encoding: native is supported by {', '.join(families.native_categorical())}, "
                    f"not by {', '.join(unable)} (set training.families, or use onehot)"
                )
        return self

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
    public_url: str | None = None  # the predictor as the user's browser opens it (default: url)
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
    spool_dir: Path | None = None  # where the prediction log waits while the database is down (<work_dir>/spool)
    # nginx: the predictor listens behind a buffering nginx that reads every request, with timeouts, before
    # gunicorn sees it, so slow clients hold none of its threads (docs/reliability.md, "Slow clients");
    # none: gunicorn listens itself (behind a buffering proxy of your own)
    proxy: Literal["nginx", "none"] = "nginx"
    proxy_client_timeout_seconds: int = Field(10, ge=1)  # a request's header, or a stall in its body or answer
    proxy_worker_connections: int = Field(4096, ge=64)  # open client connections nginx holds at once


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
    reports_dir: Path | None = None  # Evidently's HTML reports (default <work_dir>/reports/evidently)
    # Batches whose labels have arrived: retrain learns from them (None: every configured batch).
    labeled_batches: list[str] | None = None
    # Evidently's drift is computed on a seeded sample of at most this many rows of the batch (and of the
    # reference); row and missing counts are exact over the whole batch. None: Evidently sees every row.
    drift_sample_rows: int | None = Field(100_000, ge=100)


class Compute(Strict):
    """Where the table-sized work runs (prepare, train, monitor a prepared batch, batch scoring): pandas in this
    process, or Spark (docs/scale.md)."""

    engine: Literal["pandas", "spark"] = "pandas"
    # local[N]: Spark inside this process on N cores; spark://host:7077: a standalone cluster
    spark_master: str = "local[2]"
    chunk_rows: int = Field(250_000, ge=1_000)  # rows scored at once (pandas) or per Arrow batch (Spark)


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
    compute: Compute = Compute()
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
        url = self.stores.tracking_uri
        return resolve_store_url(url, self.root) if url else sqlite_url(self.work_dir / "mlflow.db")

    @property
    def tracking_ui_url(self) -> str | None:
        """MLflow's UI as a user's browser opens it; None for a local store (no UI runs)."""
        url = self.stores.ui_url or self.tracking_uri
        return url.rstrip("/") if url.startswith(("http://", "https://")) else None

    @property
    def predictor_public_url(self) -> str:
        return self.serving.public_url or self.serving.url

    @property
    def monitoring_db(self) -> str:
        url = self.stores.monitoring_db
        return resolve_store_url(url, self.root) if url else sqlite_url(self.work_dir / "monitoring.db")

    @property
    def artifact_location(self) -> str:
        loc = self.stores.artifact_location
        if loc and "://" in loc:
            return loc
        return (self.resolve(loc) if loc else self.work_dir / "mlartifacts").as_uri()

    @property
    def spool_dir(self) -> Path:
        """Where the predictor's prediction log waits while the monitoring database is down."""
        spool = self.serving.spool_dir
        return self.resolve(spool) if spool else self.work_dir / "spool"

    @property
    def drift_reports_dir(self) -> Path:
        """Where the monitor pipeline writes Evidently's HTML reports."""
        folder = self.monitoring.reports_dir
        return self.resolve(folder) if folder else self.work_dir / "reports" / "evidently"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def resolve_store_url(url: str, root: Path) -> str:
    """Make a relative ``sqlite:///`` URL absolute against the project root; other URLs pass through."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return prefix + str(root / url[len(prefix) :])
    return url
