"""The first ten minutes: ``python -m benchmarks demo`` -> ``benchmarks/results/demo.json``.

Clones the committed ``HEAD`` into a fresh folder beside this checkout (so the Makefile finds the shared
dataset the same way), runs ``make demo`` there as a new user would (its ``make setup`` included), and
records the wall time, the demo's own stage times (its ``demo.json``), and ``noise_lines``: output lines that
come from a library's logging, warnings or progress bars (:func:`mlops.core.platform.demo.library_noise`). The predictor
the demo leaves running is stopped with ``python -m mlops down`` and the clone is removed.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.table import Table

from mlops.core import reporting
from mlops.core.platform.demo import REPORT, library_noise

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "demo.json"


def main() -> None:
    clone = Path(tempfile.mkdtemp(prefix="demo-clone-", dir=ROOT.parent))
    try:
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MAGE_", "VIRTUAL_ENV"))}
        started = time.monotonic()
        # one stream, as a terminal shows it: the last lines are the demo's last words
        result = subprocess.run(["make", "demo"], cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        seconds = time.monotonic() - started
        output = result.stdout.decode(errors="replace")
        report_file = clone / ".mlops" / "reports" / "bank-marketing" / REPORT  # the default work dir
        report = json.loads(report_file.read_text()) if report_file.is_file() else {}
        subprocess.run([".venv/bin/python", "-m", "mlops", "down"], cwd=clone, env=env, capture_output=True)
    finally:
        shutil.rmtree(clone, ignore_errors=True)
    noise = library_noise(output)
    lines = output.rstrip("\n").split("\n")
    numbers = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "command": "make demo (fresh clone, its make setup included)",
        "passed": result.returncode == 0,
        "seconds": round(seconds, 1),
        "demo_seconds": report.get("seconds"),
        "setup_seconds": round(seconds - report["seconds"], 1) if "seconds" in report else None,
        "stages": report.get("stages", {}),
        "champion_before": report.get("champion_before"),
        "champion_after": report.get("champion_after"),
        "quality_before_after": report.get("quality_before_after", []),
        "output_lines": len(lines),
        "noise_lines": len(noise),
        "noise_examples": noise[:5],
        "last_lines": lines[-8:],
    }
    reporting.write_json(RESULT, numbers)
    table = Table(title=f"make demo from a fresh clone: {numbers['seconds']:.0f} s, {len(noise)} noise lines")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for name, stage_seconds in numbers["stages"].items():
        table.add_row(name, f"{stage_seconds:.0f}")
    table.add_row("setup and the rest", f"{numbers['setup_seconds'] or 0:.0f}")
    reporting.show(table)
    if result.returncode != 0:
        print(output[-3000:])
