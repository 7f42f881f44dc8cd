"""Console tables of what the pipelines produced: data report, leakage check, training leaderboard."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

PIPED_WIDTH = 140  # rich's 80 columns would cut the tables short in logs and captured output


def console(stderr: bool = False) -> Console:
    """A rich console; written to a pipe or a file (Mage's logs, CI), it is PIPED_WIDTH wide unless
    ``COLUMNS`` says otherwise."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and not os.environ.get("COLUMNS", "").isdigit()
    return Console(stderr=stderr, width=PIPED_WIDTH if piped else None)


def data_table(report: dict[str, Any]) -> Table:
    table = Table(
        title=f"prepared data: {report['dataset']} (target {report['target']} = {report['positive_label']!r})"
    )
    for col in ("part", "rows", "positive rate", "most missing column"):
        table.add_column(col, justify="left" if col in ("part", "most missing column") else "right")
    for name, part in report["parts"].items():
        column, share = max(part["missing_share"].items(), key=lambda kv: kv[1], default=("-", 0.0))
        table.add_row(
            name,
            f"{part['rows']:,}",
            f"{part['positive_rate']:.3f}" if part["positive_rate"] is not None else "-",
            f"{column} ({share:.1%})" if share > 0 else "none missing",
        )
    return table


def leakage_table(records: list[dict[str, Any]], bound: float) -> Table:
    table = Table(title=f"leakage check (single-feature ROC-AUC on the reference, bound {bound})")
    for col in ("column", "ROC-AUC", "flagged", "excluded", "reason"):
        table.add_column(col)
    for r in records:
        table.add_row(
            r["column"],
            f"{r['single_feature_auc']:.3f}",
            "yes" if r["flagged"] else "",
            "yes" if r["excluded"] else "",
            r["reason"],
        )
    return table


def leaderboard_table(board: pd.DataFrame, metric: str) -> Table:
    table = Table(title=f"model families, ranked by validation {metric}")
    for col in ("model", "ROC-AUC", "PR-AUC", "lift@10%", "F1", "threshold", "chosen"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    for row in board.to_dict("records"):
        table.add_row(
            row["model"],
            f"{row['roc_auc']:.4f}",
            f"{row['pr_auc']:.4f}",
            f"{row['lift']:.2f}",
            f"{row['f1']:.4f}",
            f"{row['threshold']:.3f}",
            "yes" if row["chosen"] else "",
        )
    return table


def write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def show(*tables: Table) -> None:
    out = console()
    for table in tables:
        out.print(table)


def image_table(built: dict[str, dict[str, float]]) -> Table:
    table = Table(title="images of the compose stack")
    for col in ("service", "build seconds", "size (MB)"):
        table.add_column(col, justify="left" if col == "service" else "right")
    for service, numbers in built.items():
        table.add_row(service, f"{numbers['build_seconds']:.0f}", f"{numbers['size_mb']:,.0f}")
    return table


def alert_summary(evaluation: Any, database_url: str) -> str:
    """How the provisioned alert rule evaluated (an ``alerting.AlertEvaluation``), without Grafana."""
    values = ", ".join(f"{k} = {v:.4g}" if v is not None else f"{k} = no data" for k, v in evaluation.values.items())
    instance = "".join(f" for {k} {v!r}" for k, v in evaluation.labels.items())
    return (
        f"alert rule {evaluation.rule!r}{instance} evaluated with its own SQL on {database_url.split('://', 1)[0]} "
        f"(no Grafana in this run): [bold]{evaluation.state}[/bold] ({values})"
    )
