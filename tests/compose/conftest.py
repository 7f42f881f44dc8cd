"""The compose stack, built and started once for the whole module (``make test-stack``).

A Docker engine: the one ``docker info`` reaches, else one started for this run (root on Debian) and stopped
at the end. Base images an air-gapped machine cannot pull are built as offline stand-ins. The stack runs on
free ports (the host's PostgreSQL keeps 5432) with a ``.env`` of generated secrets in a temporary folder, and
reads the Bank Marketing CSV from the folder that holds it (``MLOPS_TEST_DATA``). Grafana's image cannot be
had without a registry: where it cannot be pulled the stack runs every other service, and the summary says so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.core.platform import compose_stack, container_engine
from mlops.core.platform.compose_stack import ComposeStack
from mlops.core.platform.container_engine import Engine
from tests.conftest import bank_csv_path

HERE = Path(__file__).resolve().parent
GRAFANA_IMAGE = "grafana/grafana:11.2.2"
PROJECT = "mlopsstacktest"  # one name: its images are re-tagged run after run instead of piling up
MEASURED: dict[str, Any] = {}  # what the run measured (printed at the end; benchmarks/stack.py records it)
GAPS: list[str] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("MLOPS_TEST_STACK_MEASUREMENTS")  # benchmarks/stack.py records what was measured
    if target and MEASURED:
        Path(target).write_text(json.dumps(MEASURED, indent=2))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for gap in GAPS:
        terminalreporter.write_line(f"stack test: {gap}", yellow=True)
    if MEASURED:
        terminalreporter.write_line("stack test measured: " + json.dumps(MEASURED, sort_keys=True))


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    with container_engine.engine_session() as found:
        yield found
    assert found.pid is None  # an engine this run started is stopped


@pytest.fixture(scope="session")
def stack(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    bases = container_engine.ensure_base_images(engine)
    MEASURED["base_images"] = bases
    services = compose_stack.RUNNABLE_OFFLINE
    if engine.has_image(GRAFANA_IMAGE) or engine.docker("pull", GRAFANA_IMAGE, check=False).returncode == 0:
        services = (*services, "grafana")
    else:
        GAPS.append(
            f"Grafana's image ({GRAFANA_IMAGE}) cannot be pulled here and cannot be built offline: the stack ran "
            "without it; its alert rule ran as its read-only role on the stack's PostgreSQL and its webhook body "
            "was posted to the contact point's URL (Mage's retrain trigger)"
        )
    data = bank_csv_path()
    stack = ComposeStack.create(
        engine,
        tmp_path_factory.mktemp("stack"),
        project=PROJECT,
        extra_files=[HERE / "stack-test.yml"],
        settings={"DATA_DIR": str(data.parent)},
    )
    stack.down(volumes=True)  # whatever an interrupted earlier run left
    try:
        MEASURED["images"] = container_engine.build_services(
            engine, stack.env | {"COMPOSE_PROJECT_NAME": stack.project}
        )
        MEASURED["up_seconds"] = round(stack.up(services), 1)
        MEASURED["services"] = list(services)
        yield stack
    finally:
        if stack.compose("ps", "--all", "--quiet", check=False).stdout.strip():
            print(stack.compose("logs", "--tail", "60", check=False).stdout[-20000:])
        stack.down(volumes=True)
