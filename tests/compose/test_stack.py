"""``docker compose up``, for real: every image built, the whole loop run inside the stack through Mage's API as a
user's clicks would, the UIs driven in a browser, state kept across restarts and crashes, nothing left behind.

The tests run in file order on one stack (the module's fixture); each step builds on the one before.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
import sqlalchemy as sa
import yaml
from mlflow.tracking import MlflowClient

from mlops.core import config, services
from mlops.core.monitoring import alerting, store
from mlops.core.platform.compose_stack import SPARK_MASTER, SPARK_SERVICES, ComposeStack, MageRuns, trigger_webhook
from mlops.core.platform.container_engine import Engine
from mlops.testing import mage_routes
from mlops.testing.drills import logged_rows
from mlops.testing.slow_client_drill import KINDS, slow_clients
from tests.conftest import bank_csv_path
from tests.reliability.test_mage_routes import documented_open_routes

from . import browser
from .conftest import MEASURED

pytestmark = [pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
WEBHOOKS = ROOT.parent / "shared" / "grafana"
BUILT = ("mlflow", "mage", "predictor", "streamlit")
# distributions an image must not carry: each carries what its service needs and no more
DISTRIBUTIONS = (
    "import json, importlib.metadata as m; print(json.dumps([d.metadata['Name'].lower() for d in m.distributions()]))"
)
FORBIDDEN = {
    "predictor": ("mage-ai", "mlflow", "streamlit", "evidently", "optuna", "nvidia-nccl-cu12", "pyspark"),
    "streamlit": ("mage-ai", "pyspark"),
    "mage": ("streamlit",),  # it carries pyspark: the Spark driver, and the spark profile's master and workers
    "mlflow": ("mage-ai", "streamlit", "pyspark"),
}
PREDICTOR_MAX_MB = 700
MONITORING_TABLES = ("predictions", "evaluations", "monitor_runs", "model_events", "alerts")
# the train pipeline on the cluster, with few trees: what is checked is where it runs and what it registers
SPARK_TRAINING = {
    "MLOPS_COMPUTE__ENGINE": "spark",
    "MLOPS_TRAINING__SPARK_PARAMS": json.dumps({"n_estimators": 40, "max_depth": 4, "learning_rate": 0.2}),
}
CONTAINER_WORK_DIR = "/home/src/.mlops"  # the mage image's work dir (the mlops_work volume, the workers' too)
# In the Mage container: the two scored tables, rows aligned on the features, as the probabilities' largest gap.
COMPARE_SCORES = """
import json, sys
import pandas as pd
from mlops.core import config
from mlops.core.lifecycle.champion_scoring import DECISION, PROBABILITY
features = config.load().dataset.features
def aligned(path):
    frame = pd.read_parquet(path)
    return frame.sort_values(features, kind="stable", na_position="last").reset_index(drop=True)
spark, pandas_ = aligned(sys.argv[1]), aligned(sys.argv[2])
same = len(spark) == len(pandas_)
print(json.dumps({
    "rows": [len(spark), len(pandas_)],
    "max_abs_diff": float((spark[PROBABILITY] - pandas_[PROBABILITY]).abs().max()) if same else None,
    "decisions_differ": int((spark[DECISION] != pandas_[DECISION]).sum()) if same else None,
}))
"""


@dataclass
class Loop:
    """What the loop left for the later tests."""

    champion_before: str = ""
    champion_after: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)


LOOP = Loop()


@pytest.fixture(scope="module")
def settings(stack: ComposeStack) -> config.Settings:
    return stack.settings()


@pytest.fixture(scope="module")
def runs(settings: config.Settings) -> MageRuns:
    return MageRuns(settings)


def mlflow_client(settings: config.Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def alias_version(settings: config.Settings, alias: str) -> str:
    return str(mlflow_client(settings).get_model_version_by_alias(settings.training.model_name, alias).version)


def latest_version(settings: config.Settings) -> int:
    found = mlflow_client(settings).search_model_versions(f"name='{settings.training.model_name}'")
    return max((int(v.version) for v in found), default=0)


def served(settings: config.Settings) -> dict[str, Any]:
    return dict(requests.get(f"{settings.serving.url}/model", timeout=10).json())


def table_counts(settings: config.Settings) -> dict[str, int]:
    engine = sa.create_engine(store.normalise_url(settings.monitoring_db))
    try:
        with engine.connect() as conn:
            return {
                t: int(conn.execute(sa.text(f"SELECT count(*) FROM monitoring.{t}")).scalar_one())
                for t in MONITORING_TABLES
            }
    finally:
        engine.dispose()


def image_python(engine: Engine, image: str, code: str) -> str:
    return engine.docker("run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c", code).stdout


class SteadyLoad:
    """Single-record requests from a few clients until stopped: every answer's status and request id."""

    def __init__(self, url: str, records: list[dict[str, Any]], clients: int = 3) -> None:
        self.url, self.records = url, records
        self.stop_event = threading.Event()
        self.statuses: Counter[str] = Counter()
        self.answered: list[str] = []
        self.versions: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(clients)]

    def _client(self, number: int) -> None:
        session = requests.Session()
        sent = number
        while not self.stop_event.is_set():
            record = self.records[sent % len(self.records)]
            sent += len(self.threads)
            try:
                response = session.post(f"{self.url}/predict", json=record, timeout=30)
                status = str(response.status_code)
            except requests.RequestException as exc:
                response, status = None, exc.__class__.__name__
            with self.lock:
                self.statuses[status] += 1
                if response is not None and response.status_code == 200:
                    body = response.json()
                    self.answered.append(body["request_id"])
                    self.versions[str(body["model_version"])] += 1
            time.sleep(0.01)

    def __enter__(self) -> SteadyLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(60)


def wait_logged(settings: config.Settings, request_ids: list[str], timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while (found := logged_rows(settings.monitoring_db, request_ids)) < len(
        request_ids
    ) and time.monotonic() < deadline:
        time.sleep(1)
    return found


def records_for(settings: config.Settings, rows: int = 200) -> list[dict[str, Any]]:
    """Request records: the model's features of real rows, as JSON values (a missing value as null)."""
    frame = pd.read_csv(bank_csv_path(), sep=settings.dataset.source.separator).sample(rows, random_state=5)
    return [
        {k: None if pd.isna(v) else v.item() if hasattr(v, "item") else v for k, v in r.items()}
        for r in frame[settings.dataset.features].to_dict("records")
    ]


# ---- the images -------------------------------------------------------------------------------------------


def test_images_carry_only_what_their_service_needs(stack: ComposeStack, engine: Engine) -> None:
    secrets = [v for k, v in stack.env.items() if k.endswith(("PASSWORD", "TOKEN")) and v]
    for service in BUILT:
        image = f"{stack.project}-{service}"
        user = engine.docker("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
        assert user not in ("", "0", "root"), f"{image} runs as root"
        installed = json.loads(image_python(engine, image, DISTRIBUTIONS))
        carried = sorted(set(FORBIDDEN[service]) & set(installed))
        assert not carried, f"{image} carries {carried}"
        layers = engine.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
        config_env = engine.docker("image", "inspect", "--format", "{{json .Config.Env}}", image).stdout
        assert not [s for s in secrets if s in layers or s in config_env], f"a secret is in {image}'s layers"
        if service == "mage":
            assert {"mage-ai", "pyspark"} <= set(installed), f"{image} lacks Mage or pyspark"
            java = engine.docker("run", "--rm", "--network", "none", "--entrypoint", "java", image, "-version")
            assert 'version "17.' in java.stderr, f"{image} lacks Java 17 (Spark's JVM): {java.stderr}"
    for service in ("mage", "streamlit", "predictor"):  # the build contexts keep data, .venv, .mlops and .env out
        image = f"{stack.project}-{service}"
        found = engine.docker(
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "sh",
            image,
            "-c",
            "find / -xdev \\( -name .env -o -name .venv -o -name '*.csv' -o -name mlruns \\) -not -path '*-packages/*';"
            " for d in /home/src/.mlops /home/src/data /app/.mlops; do [ -d $d ] && ls -A $d; done; true",
        ).stdout.split()
        assert found == [], f"{image} holds {found}"
    size = engine.image_size(f"{stack.project}-predictor") / 1e6
    assert size <= PREDICTOR_MAX_MB, f"the predictor image is {size:.0f} MB"


def test_the_stack_is_healthy_and_waits_for_a_champion(stack: ComposeStack, settings: config.Settings) -> None:
    states = [json.loads(line) for line in stack.compose("ps", "--format", "json").stdout.splitlines()]
    assert {s["Service"]: s["Health"] for s in states} == {s: "healthy" for s in MEASURED["services"]}
    ready = requests.get(f"{settings.serving.url}/ready", timeout=10)
    assert ready.status_code == 503 and ready.json()["ready"] is False
    MEASURED["memory_mb_at_rest"] = stack.memory_mb()


# ---- the loop, inside the stack ---------------------------------------------------------------------------


def test_prepare_train_deploy_test_through_mage(runs: MageRuns, settings: config.Settings) -> None:
    started = time.monotonic()
    MEASURED["loop_ok"] = False
    for pipeline in ("prepare", "train"):
        runs.run(pipeline)
    challenger = alias_version(settings, "challenger")
    runs.run("deploy")
    LOOP.champion_before = alias_version(settings, "champion")
    assert LOOP.champion_before == challenger
    assert requests.get(f"{settings.serving.url}/ready", timeout=10).status_code == 200
    assert served(settings)["version"] == LOOP.champion_before
    runs.run("test")
    counts = table_counts(settings)
    assert counts["evaluations"] >= 1 and counts["model_events"] >= 1
    MEASURED["loop_seconds"] = time.monotonic() - started


# ---- attacks on what the stack publishes (issue #25: the native drills, against the containers) --------------


def test_no_route_of_mage_answers_without_a_login(stack: ComposeStack) -> None:
    """Mage's whole route table (read from its own router), every method, no credentials, on the compose Mage."""
    outcome = mage_routes.check_routes(stack.url("mage"))
    MEASURED["mage_routes"] = {k: outcome[k] for k in ("routes_checked", "calls", "open_state_changing")}
    assert outcome["open_state_changing"] == 0, outcome["open"]
    assert set(outcome["open"]) <= documented_open_routes(), outcome["open"]
    assert outcome["cors_star"] == [], outcome["cors_star"]


def test_a_thousand_slow_connections_of_each_kind_do_not_starve_the_predictor(settings: config.Settings) -> None:
    """Through the published port: the container's nginx reads every client before gunicorn sees it."""
    outcome = slow_clients(
        settings.serving.url, connections_per_kind=1000, normal_requests=200, record=records_for(settings, 1)[0]
    )
    MEASURED["slow_clients"] = {k: outcome[k] for k in ("connections_per_kind", "answered_share", "p99_ms")}
    for kind in KINDS:
        result = outcome["kinds"][kind]
        assert result["opened"] == 1000 and result["answered_share"] >= 0.99, result
        assert result["closed_in_bounded_time"], result


def test_monitor_batches_and_the_alert_rule_fires_as_grafana_reads_it(
    stack: ComposeStack, runs: MageRuns, settings: config.Settings
) -> None:
    started = time.monotonic()
    for batch in ("summer", "fall"):
        runs.run("monitor", {"batch": batch})
    assert table_counts(settings)["monitor_runs"] >= 2
    env = stack.env
    reader = stack.database_url(
        env.get("MONITORING_DB", "monitoring"), env.get("GRAFANA_DB_USER", "grafana_reader"), env["GRAFANA_DB_PASSWORD"]
    )
    as_grafana = settings.model_copy(update={"stores": settings.stores.model_copy(update={"monitoring_db": reader})})
    evaluation = alerting.evaluate(as_grafana, migrate=False)
    assert evaluation.firing, alerting.describe(evaluation)
    engine = sa.create_engine(store.normalise_url(reader))
    try:
        with pytest.raises(sa.exc.ProgrammingError), engine.begin() as conn:  # Grafana's role only reads
            conn.execute(sa.text("DELETE FROM monitoring.alerts"))
    finally:
        engine.dispose()
    MEASURED["loop_seconds"] += time.monotonic() - started


def contact_point_url(stack: ComposeStack) -> str:
    """The provisioned contact point's URL, as Grafana expands it (MAGE_URL and the retrain token)."""
    document = yaml.safe_load((ROOT / "grafana" / "provisioning" / "alerting" / "contact-points.yaml").read_text())
    (url,) = [r["settings"]["url"] for point in document["contactPoints"] for r in point["receivers"]]
    token = stack.env["MLOPS_SECRETS__RETRAIN_TOKEN"]
    return alerting.interpolate_env(url, {"MAGE_URL": stack.url("mage"), "MLOPS_SECRETS__RETRAIN_TOKEN": token})


def test_grafanas_webhook_retrains_and_the_predictor_switches_without_a_failed_request(
    stack: ComposeStack, runs: MageRuns, settings: config.Settings
) -> None:
    started = time.monotonic()
    LOOP.records = records_for(settings)
    body = json.loads((WEBHOOKS / "webhook-firing.json").read_text())
    with SteadyLoad(settings.serving.url, LOOP.records) as load:
        run = runs.wait_run(trigger_webhook(contact_point_url(stack), body), timeout=1200)
        assert run["status"] == "completed", runs.failed_blocks(int(run["id"]))
        LOOP.champion_after = alias_version(settings, "champion")
        time.sleep(3)  # answers from the new workers too
    assert LOOP.champion_after != LOOP.champion_before, "the retrained model was not promoted"
    assert served(settings)["version"] == LOOP.champion_after
    assert set(load.statuses) == {"200"}, f"requests failed during the switch: {dict(load.statuses)}"
    assert load.versions[LOOP.champion_after] > 0 and load.versions[LOOP.champion_before] > 0, dict(load.versions)
    assert wait_logged(settings, load.answered) == len(load.answered), "answered predictions missing from the log"
    MEASURED["switch_load"] = {"answered": len(load.answered), "statuses": dict(load.statuses)}
    MEASURED["loop_seconds"] = round(MEASURED["loop_seconds"] + time.monotonic() - started, 1)
    MEASURED["loop_ok"] = True
    MEASURED["memory_mb_after_loop"] = stack.memory_mb()


# ---- the spark profile: a standalone cluster, Mage its driver ---------------------------------------------


def test_scoring_and_training_run_on_the_spark_profiles_cluster(stack: ComposeStack, settings: config.Settings) -> None:
    """The profile's master and two workers join the running stack; the prepared test split is scored on them with
    the predictor's probabilities (the pandas engine's in the same container), and the train pipeline runs on them."""
    started = time.monotonic()
    timings: dict[str, float] = {}
    stack.compose("build", *SPARK_SERVICES, timeout=1800)  # the mage image's cached layers
    timings["build_seconds"] = round(time.monotonic() - started, 1)
    timings["up_seconds"] = round(stack.up(SPARK_SERVICES, timeout=300), 1)
    master = stack.spark_status()
    assert [w["state"] for w in master["workers"]] == ["ALIVE", "ALIVE"], master["workers"]
    assert master["cores"] == 2 and not master["completedapps"]

    prepared = f"{CONTAINER_WORK_DIR}/datasets/{settings.dataset.name}/test.parquet"
    out = f"{CONTAINER_WORK_DIR}/spark-check"
    on_cluster = {"MLOPS_COMPUTE__ENGINE": "spark", "MLOPS_COMPUTE__SPARK_MASTER": SPARK_MASTER}
    stack.exec("mage", "python", "-m", "mlops", "score", prepared, f"{out}/pandas.parquet", "--engine", "pandas")
    scoring = time.monotonic()
    stack.exec("mage", "python", "-m", "mlops", "score", prepared, f"{out}/spark", "--engine", "spark", env=on_cluster)
    timings["score_seconds"] = round(time.monotonic() - scoring, 1)
    compared = stack.exec_json("mage", COMPARE_SCORES, f"{out}/spark", f"{out}/pandas.parquet")
    rows = compared["rows"][1]
    assert rows > 1000 and compared["rows"][0] == rows, compared
    assert compared["max_abs_diff"] <= 1e-9 and compared["decisions_differ"] == 0, compared
    master = stack.spark_status()
    assert len(master["completedapps"]) == 1, master["completedapps"]
    for worker in SPARK_SERVICES[1:]:  # each worker ran an executor of the application
        finished = stack.spark_status(f"http://{worker}:8081/json/")["finishedexecutors"]
        assert finished, f"{worker} ran no executor"

    registered = latest_version(settings)
    training = time.monotonic()
    trained = stack.exec("mage", "python", "-m", "mlops", "run", "train", env=SPARK_TRAINING, check=False)
    timings["train_seconds"] = round(time.monotonic() - training, 1)
    MEASURED["spark"] = {"rows_scored": rows, **timings}
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-4000:]
    master = stack.spark_status()
    assert len(master["completedapps"]) >= 2, "training did not run on the cluster"
    assert latest_version(settings) > registered, "training on the cluster registered no model"
    MEASURED["spark"]["memory_mb"] = {k: v for k, v in stack.memory_mb().items() if k.startswith("spark")}
    stack.compose("rm", "--stop", "--force", *SPARK_SERVICES, timeout=300)
    MEASURED["spark"]["seconds"] = round(time.monotonic() - started, 1)


# ---- the UIs, in a browser -------------------------------------------------------------------------------


def screenshot_dir(tmp_path: Path) -> Path:
    """images/ when the benchmark renews the pictures (MLOPS_TEST_STACK_SCREENSHOTS), else this test's folder."""
    return Path(os.environ.get("MLOPS_TEST_STACK_SCREENSHOTS", tmp_path))


def test_a_user_runs_a_pipeline_from_mages_ui(stack: ComposeStack, runs: MageRuns, tmp_path: Path) -> None:
    before = runs.count()
    with browser.chromium_page() as page:
        browser.mage_login(page, stack.url("mage"), stack.env["MAGE_OWNER_EMAIL"], stack.env["MAGE_OWNER_PASSWORD"])
        status = browser.mage_run_pipeline_from_ui(page, stack.url("mage"), "test", screenshot_dir(tmp_path))
    assert status == browser.MAGE_DONE
    assert runs.count() == before + 1


def test_a_user_scores_a_client_in_the_streamlit_test_form(stack: ComposeStack, tmp_path: Path) -> None:
    with browser.chromium_page() as page:
        shown = browser.streamlit_score_client(page, stack.url("streamlit"), screenshot_dir=tmp_path)
    assert 0 <= float(shown.rstrip("%")) <= 100


# ---- the standalone payload -------------------------------------------------------------------------------


def test_the_deploy_payload_builds_an_image_that_scores(
    stack: ComposeStack, engine: Engine, settings: config.Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "payload"
    stack.compose("cp", "mage:/home/src/build/predictor", str(folder))
    image = f"{stack.project}-payload"
    started = time.monotonic()
    engine.docker("build", "--network", "host", "--tag", image, str(folder), timeout=1800)
    MEASURED["payload_image"] = {
        "build_seconds": round(time.monotonic() - started, 1),
        "size_mb": round(engine.image_size(image) / 1e6, 1),
    }
    port = services.free_port()
    name = f"{stack.project}-payload-check"
    engine.docker(
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        f"{stack.project}_default",
        "--publish",
        f"127.0.0.1:{port}:8080",
        image,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        answer = requests.post(f"{url}/predict", json=LOOP.records[0], timeout=30)
        assert answer.status_code == 200, answer.text
        assert str(answer.json()["model_version"]) == LOOP.champion_after
    finally:
        engine.docker("rm", "--force", name, check=False)
        engine.docker("rmi", image, check=False)


# ---- durability -------------------------------------------------------------------------------------------


def test_down_and_up_keep_every_store(stack: ComposeStack, runs: MageRuns, settings: config.Settings) -> None:
    client = mlflow_client(settings)
    experiment = client.get_experiment_by_name(settings.stores.experiment)
    assert experiment is not None
    before = {
        "champion": alias_version(settings, "champion"),
        "mlflow_runs": len(client.search_runs([experiment.experiment_id], max_results=1000)),
        "mage_runs": runs.count(),
        "monitoring": table_counts(settings),
    }
    stack.down()
    stack.up(tuple(MEASURED["services"]))
    after = {
        "champion": alias_version(settings, "champion"),
        "mlflow_runs": len(client.search_runs([experiment.experiment_id], max_results=1000)),
        "mage_runs": MageRuns(settings).count(),
        "monitoring": table_counts(settings),
    }
    assert after == before
    assert served(settings)["version"] == before["champion"]
    local = client.download_artifacts(
        client.get_model_version_by_alias(settings.training.model_name, "champion").run_id,
        "",
        str(Path(settings.work_dir)),
    )
    assert Path(local).exists()


@pytest.mark.parametrize("service", ["predictor", "mlflow"])
def test_a_crashed_container_comes_back_and_no_answered_prediction_is_lost(
    stack: ComposeStack, settings: config.Settings, service: str
) -> None:
    with SteadyLoad(settings.serving.url, LOOP.records) as load:
        time.sleep(3)
        stack.crash(service)
        time.sleep(2)
        stack.wait_healthy(service)
        time.sleep(3)
    assert load.answered, dict(load.statuses)
    assert wait_logged(settings, load.answered) == len(load.answered), "answered predictions missing from the log"
    if service == "mlflow":
        assert set(load.statuses) == {"200"}, "the predictor does not need MLflow to serve"
        assert alias_version(settings, "champion") == LOOP.champion_after
    restarts = stack.engine.docker(
        "inspect", "--format", "{{.RestartCount}}", stack.container_id(service)
    ).stdout.strip()
    assert int(restarts) >= 1


def test_down_with_volumes_leaves_nothing_behind(stack: ComposeStack) -> None:
    stack.down(volumes=True)
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
