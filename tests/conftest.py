"""Real services for the suite: PostgreSQL, an MLflow server on it, and one trained model via Mage.

PostgreSQL: ``MLOPS_TEST_POSTGRES_URL`` (default 127.0.0.1:5432, database ``test``); where none answers,
a throwaway embedded server is started. Every test database is created fresh and dropped afterwards.
With ``MLOPS_TEST_FAIL_ON_SKIP=1`` (set by ``make test``) a skipped test fails the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops.core import config, services

ROOT = Path(__file__).resolve().parents[1]
SHARED_CSV = ROOT.parent / "shared" / "data" / "bank-marketing" / "bank-full.csv"
DEFAULT_POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"

# Small search budgets keep the suite fast; the benchmark uses the configured ones.
TEST_OVERRIDES = {
    "MLOPS_TRAINING__SEARCH__MAX_TRIALS": "3",
    "MLOPS_TRAINING__SEARCH__TIME_BUDGET_SECONDS": "20",
}

_skipped: list[str] = []

# The service each session fixture stands for: a test that needs one (directly or through another fixture)
# is marked for it, so that `make test-fast` (-m "not postgres and not mlflow and not mage and not slow")
# runs only what needs none, whatever its author remembered to mark.
SERVICE_FIXTURES = {"postgres_server": "postgres", "mlflow_server": "mlflow"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in SERVICE_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("MLOPS_TEST_FAIL_ON_SKIP") == "1" and _skipped and exitstatus == 0:
        session.exitstatus = 1
        print(f"\nMLOPS_TEST_FAIL_ON_SKIP: {len(_skipped)} test(s) skipped, which fails this run:", file=sys.stderr)
        for node in _skipped:
            print(f"  {node}", file=sys.stderr)


def bank_csv_path() -> Path:
    path = Path(os.environ.get("MLOPS_TEST_DATA", SHARED_CSV))
    if not path.is_file():
        pytest.fail(f"the Bank Marketing CSV is not at {path}: set MLOPS_TEST_DATA to its location")
    return path


@pytest.fixture(scope="session")
def bank_csv() -> Path:
    return bank_csv_path()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a PostgreSQL server we may create databases on."""
    url = os.environ.get("MLOPS_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    if services.postgres_reachable(url):
        yield url
        return
    data_dir = tmp_path_factory.mktemp("pg")
    embedded = services.embedded_postgres(data_dir)
    print(f"no PostgreSQL at {url}; started an embedded one in {data_dir}", file=sys.stderr)
    yield embedded
    import pgserver

    pgserver.get_server(data_dir, cleanup_mode="stop").cleanup()


@pytest.fixture(scope="session")
def make_database(postgres_server: str) -> Iterator[object]:
    """Factory: a fresh database on the test server, dropped at the end of the session."""
    created: list[str] = []

    def make(prefix: str = "mlops_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        created.append(name)
        return services.create_database(postgres_server, name)

    yield make
    for name in created:
        services.drop_database(postgres_server, name)


@pytest.fixture(scope="session")
def mlflow_server(make_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A real MLflow tracking server + registry on PostgreSQL."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = services.free_port()
    proc = services.mlflow_server(make_database("mlflow"), folder / "artifacts", port, folder / "mlflow.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        services.wait_http(f"{url}/health", proc, timeout=180)
        yield url
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def platform_env(
    mlflow_server: str,
    make_database,
    bank_csv: Path,  # type: ignore[no-untyped-def]
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """Environment of the platform under test: its own work dir, MLflow server and monitoring DB."""
    work = tmp_path_factory.mktemp("work")
    env = {
        "MLOPS_PATHS__WORK_DIR": str(work),
        "MLOPS_STORES__TRACKING_URI": mlflow_server,
        "MLOPS_STORES__MONITORING_DB": make_database("monitoring"),
        "MLOPS_DATASET__SOURCE__PATH": str(bank_csv),
        "MAGE_DATA_DIR": str(work / "mage_data"),
        **TEST_OVERRIDES,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def settings(platform_env: dict[str, str]) -> config.Settings:
    return config.load()


def run_cli(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m mlops <args>`` in a process of its own, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mlops", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def mage_run(
    pipeline: str, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """``mage run mlops <pipeline>`` headless, as users and CI run it."""
    mage = shutil.which("mage", path=str(Path(sys.executable).parent)) or "mage"
    return subprocess.run(
        [mage, "run", "mlops", pipeline],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def prepared(settings: config.Settings) -> subprocess.CompletedProcess[str]:
    """The prepare pipeline, run once through Mage on the real data."""
    result = mage_run("prepare")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="session")
def trained(prepared: subprocess.CompletedProcess[str], settings: config.Settings) -> subprocess.CompletedProcess[str]:
    """The train pipeline, run once through Mage on the prepared data (registers `challenger`)."""
    result = mage_run("train")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="session")
def champion(trained: subprocess.CompletedProcess[str], settings: config.Settings) -> str:
    """The trained challenger promoted by the deploy policy (or the champion already in place)."""
    from mlops.core.lifecycle import promotion

    decision = promotion.promote_if_better(settings)
    assert decision.champion is not None
    return decision.champion
