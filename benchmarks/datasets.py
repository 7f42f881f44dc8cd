"""The dataset matrix, measured: each table of ``mlops.testing.tables`` through the whole loop.

The same loop the suite's ``tests/matrix`` asserts (``mlops.testing.loop``: prepare, train, deploy, one request,
test, monitor a batch and a window of the log, retrain by hand and from an alert, all through Mage), here with
an embedded SQLite MLflow store per table, so it needs no running service. Records each table's rows, features,
stages passed, the champion's held-out ROC-AUC and PR-AUC, what each retrain decided and the wall time.

Writes ``benchmarks/results/datasets.json`` (``tables``: a list with ``name``, ``source``, ``stages``, ...);
takes about two minutes per table on our 2 cores.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import write_result
from mlops.testing import loop, tables


def main() -> dict[str, Any]:
    console = Console()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-datasets-") as tmp:
        for table in tables.TABLES:
            folder = Path(tmp) / table.name
            result = loop.run_loop(table, folder, f"sqlite:///{folder / 'mlflow.db'}", progress=console.print)
            if result.failed:
                console.print(result.failure_report())
            results.append(result.summary())
    summary = {
        "loop": list(loop.STAGES),
        "training": {"families": loop.FAMILIES, "search": loop.SEARCH},
        "tables": results,
        "all_passed": all(not r["failed"] for r in results),
    }
    write_result("datasets", summary)
    console.print(results_table(results))
    return summary


def results_table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="the whole loop on each table")
    for column in ("table", "rows", "features", "stages passed", "test ROC-AUC", "test PR-AUC", "seconds"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for r in results:
        table.add_row(
            r["name"],
            f"{r['rows']:,}",
            str(r["features"]),
            f"{len(r['stages'])}/{len(loop.STAGES)}",
            "" if r["test_roc_auc"] is None else f"{r['test_roc_auc']:.3f}",
            "" if r["test_pr_auc"] is None else f"{r['test_pr_auc']:.3f}",
            f"{r['seconds']:.0f}",
        )
    return table
