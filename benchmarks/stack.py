"""The compose stack, cold: ``python -m benchmarks stack`` -> ``benchmarks/results/stack.json``.

Runs the stack test (``tests/compose``: images built without cache, ``up --wait``, the whole loop inside the
stack, the browser checks, restarts and crashes, ``down -v``) and records what it measured: each image's
build seconds and size, ``up_seconds`` (from ``up`` to every service healthy), each container's memory at rest
and after the loop, the loop's wall time and ``loop_ok``. Where no engine answers, one is started on a fresh
image store (``MLOPS_DOCKER_DATA_ROOT``), so the base images' offline stand-ins are built cold too.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.table import Table

from mlops.core import reporting
from mlops.core.platform import container_engine

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "stack.json"


def main() -> None:
    fresh_store = not container_engine.Engine(env=dict(os.environ)).answers()
    with tempfile.TemporaryDirectory(prefix="stack-bench-") as tmp:
        measured = Path(tmp) / "measured.json"
        env = {**os.environ, "MLOPS_TEST_STACK_MEASUREMENTS": str(measured), "MLOPS_TEST_STACK_NO_CACHE": "1"}
        env["MLOPS_TEST_STACK_SCREENSHOTS"] = str(ROOT / "images")  # renews images/mage-*.png
        if fresh_store:
            env |= {
                "MLOPS_DOCKER_DATA_ROOT": str(Path(tmp) / "docker"),
                "MLOPS_DOCKER_RUN_DIR": f"/run/mlops-bench-{os.getpid()}",
            }
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "tests/compose"], cwd=ROOT, env=env)
        numbers = json.loads(measured.read_text()) if measured.is_file() else {}
    numbers |= {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "cold_image_store": fresh_store,
        "stack_test_passed": result.returncode == 0,
        "stack_test_seconds": round(time.monotonic() - started, 1),
    }
    RESULT.write_text(json.dumps(numbers, indent=2, sort_keys=True) + "\n")
    table = Table(title=f"compose stack (written to {RESULT.relative_to(ROOT)})")
    for column in ("service", "build s", "size MB", "MB at rest", "MB after loop"):
        table.add_column(column, justify="left" if column == "service" else "right")
    for service in numbers.get("services", []):
        image = numbers.get("images", {}).get(service, {})
        table.add_row(
            service,
            str(image.get("build_seconds", "-")),
            str(image.get("size_mb", "-")),
            str(numbers.get("memory_mb_at_rest", {}).get(service, "-")),
            str(numbers.get("memory_mb_after_loop", {}).get(service, "-")),
        )
    reporting.console().print(table)
    reporting.console().print(
        f"up {numbers.get('up_seconds')} s, loop {numbers.get('loop_seconds')} s, loop_ok {numbers.get('loop_ok')}, "
        f"stack test {'passed' if result.returncode == 0 else 'FAILED'} in {numbers['stack_test_seconds']} s"
    )
