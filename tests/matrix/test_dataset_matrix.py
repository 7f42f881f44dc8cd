"""The dataset matrix: six tables of different shapes, each through the whole loop by configuration alone.

prepare, train, deploy, one request served, test, monitor a batch and a window of the prediction log, retrain by
hand and retrain from an alert, all through the Mage pipelines, with a real MLflow server
(``mlops.testing.loop``). The tables (``mlops.testing.tables``): numbers only and small (scikit-learn's breast
cancer), mostly categorical with a yes/no target (statsmodels' fair), small with ordinal scales (statsmodels'
anes96), split on a date by calendar month (generated orders), heavy missing values with two all-empty columns
(generated claims) and wide (120 numbers). ``python -m benchmarks datasets`` runs the same loop and records
each table in ``benchmarks/results/datasets.json``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.testing import loop, tables

pytestmark = [pytest.mark.mlflow, pytest.mark.mage, pytest.mark.slow]

# Held-out ROC-AUC a working loop reaches on each table (well below what it measures: catches a broken model,
# not a worse search).
MIN_TEST_ROC_AUC = {"breast_cancer": 0.9, "fair": 0.65, "anes96": 0.8, "orders": 0.55, "claims": 0.55, "wide": 0.8}


def test_the_matrix_covers_the_shapes_users_bring() -> None:
    assert len(tables.TABLES) >= 6
    real = [t for t in tables.TABLES if "(real)" in t.source]
    assert len(real) >= 2
    specs = {t.name: t.dataset for t in tables.TABLES}
    assert any(not s.get("categorical") for s in specs.values())  # numbers only
    assert any(len(s.get("categorical", [])) > 2 * len(s.get("numerical", [])) for s in specs.values())
    assert any(s["split"]["strategy"] == "range" for s in specs.values())  # split on a date
    assert {type(s["positive_label"]) for s in specs.values()} == {int, str}  # 0/1 and text targets
    assert any(len(s.get("numerical", [])) + len(s.get("categorical", [])) >= 100 for s in specs.values())
    assert set(MIN_TEST_ROC_AUC) == set(specs)


@pytest.mark.parametrize("table", tables.TABLES, ids=lambda t: t.name)
def test_the_whole_loop_runs_on_the_table(table: tables.Table, mlflow_server: str, tmp_path: Path) -> None:
    result = loop.run_loop(table, tmp_path, mlflow_server)
    assert result.failed == [], result.failure_report()
    assert result.passed == list(loop.STAGES)
    # Both retrains trained and went through the promotion policy (not refused, not taken as a duplicate).
    assert [(r["status"], r["action"]) for r in result.retrains] == [("by hand", "retrain"), ("firing", "retrain")]
    assert all(r["outcome"].startswith("version ") for r in result.retrains), result.retrains
    assert result.champion["test_roc_auc"] >= MIN_TEST_ROC_AUC[table.name], result.summary()
