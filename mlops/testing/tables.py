"""Tables of different shapes for the dataset matrix, each with the ``dataset`` configuration a user would write.

Three are real tables that installed packages ship (nothing is downloaded): scikit-learn's breast cancer
(numbers only, 569 rows, a 0/1 target, column names with spaces), statsmodels' ``fair`` (mostly coded
categories, a yes/no target derived from a column that must then be excluded as post-outcome) and
``anes96`` (944 voters, ordinal scales as categories). The others come
from seeded generators: orders over a year split on their date (with an id, a post-outcome column and drift
in the last quarter), claims with heavy missing values and two all-empty columns (a CSV whose header ends in
``,,``), and a wide table (120 numbers and a few categories).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Table:
    name: str
    source: str  # where the rows come from: a package's dataset or a seeded generator
    shape: str  # what this table tests, in a few words
    build: Callable[[], pd.DataFrame]
    dataset: dict[str, Any]  # the configuration's `dataset` section, without `name` and `source`

    def write_csv(self, folder: Path) -> Path:
        """The table as a user would bring it: a CSV file."""
        path = folder / f"{self.name}.csv"
        self.build().to_csv(path, index=False)
        return path


def breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).frame  # `target`: 0 malignant, 1 benign


def fair() -> pd.DataFrame:
    import statsmodels.api as sm

    frame = sm.datasets.fair.load_pandas().data
    codes = ["rate_marriage", "children", "religious", "educ", "occupation", "occupation_husb"]
    frame[codes] = frame[codes].round().astype(int)  # coded categories, stored by statsmodels as floats
    frame["had_affair"] = np.where(frame["affairs"] > 0, "yes", "no")
    return frame


def anes96() -> pd.DataFrame:
    import statsmodels.api as sm

    frame = sm.datasets.anes96.load_pandas().data
    codes = ["TVnews", "selfLR", "ClinLR", "DoleLR", "PID", "educ", "income", "vote"]
    frame[codes] = frame[codes].round().astype(int)  # scales and codes, stored by statsmodels as floats
    return frame


def orders(rows: int = 4000, seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    day = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 366, rows)), unit="D")
    late = np.asarray(day >= pd.Timestamp("2024-10-01"))
    channel = np.where(
        late,
        rng.choice(["web", "app", "store"], rows, p=[0.2, 0.7, 0.1]),
        rng.choice(["web", "app", "store"], rows, p=[0.5, 0.2, 0.3]),
    )
    basket = rng.gamma(2.0, 30.0, rows) * np.where(late, 1.4, 1.0)  # the last quarter drifts
    items = rng.poisson(3, rows) + 1
    logit = -0.8 + 0.01 * basket + 0.2 * items + np.where(channel == "app", 0.7, 0.0)
    repeat = rng.random(rows) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "order_id": np.arange(100_000, 100_000 + rows),
            "ordered_at": day.strftime("%Y-%m-%d"),
            "basket_value": basket.round(2),
            "items": items,
            "channel": channel,
            "region": rng.choice(["north", "south", "east", "west"], rows),
            # known only weeks after the order: a customer who came back rated the first order
            "rated_first_order": np.where(repeat & (rng.random(rows) < 0.8), rng.integers(1, 6, rows), 0),
            "repeat_purchase": np.where(repeat, "yes", "no"),
        }
    )


def claims(rows: int = 3000, seed: int = 13) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    numbers = {f"amount_{i}": rng.lognormal(5 + i * 0.1, 1.0, rows).round(2) for i in range(6)}
    frame = pd.DataFrame(numbers)
    frame["prior_claims"] = rng.poisson(1.0, rows).astype(float)
    frame["kind"] = rng.choice(["auto", "home", "travel", "health"], rows)
    frame["agent"] = rng.choice([f"agent_{i}" for i in range(25)], rows)
    frame["state"] = rng.choice(["ca", "ny", "tx", "fl", "wa"], rows)
    logit = -2.0 + 0.0015 * frame["amount_0"] + 0.5 * frame["prior_claims"] + (frame["kind"] == "travel") * 1.0
    fraud = rng.random(rows) < 1 / (1 + np.exp(-logit))
    for i, column in enumerate([*numbers, "prior_claims", "kind", "agent"]):  # 15% to 45% missing
        frame.loc[rng.random(rows) < 0.15 + 0.04 * i, column] = None
    frame["outcome"] = np.where(fraud, "fraud", "ok")
    frame["Unnamed: 11"] = None  # a spreadsheet export whose header ends in ",,"
    frame["Unnamed: 12"] = None
    return frame


def wide(rows: int = 2500, seed: int = 17) -> pd.DataFrame:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=rows, n_features=120, n_informative=12, n_redundant=8, weights=[0.8], random_state=seed
    )
    frame = pd.DataFrame(x.round(5), columns=[f"x{i:03d}" for i in range(120)])
    rng = np.random.default_rng(seed)
    for name, levels in (("segment", 6), ("tier", 3), ("site", 12)):
        frame[name] = rng.choice([f"{name}_{i}" for i in range(levels)], rows)
    frame["label"] = y
    return frame


RANDOM_SPLIT = {"strategy": "random", "batches": {"batch_a": 0.2, "batch_b": 0.2}, "seed": 3}

TABLES = (
    Table(
        "breast_cancer",
        "scikit-learn load_breast_cancer (real)",
        "numbers only, small (569 rows), 0/1 target, names with spaces",
        breast_cancer,
        {
            "target": "target",
            "positive_label": 0,  # malignant: the class a screening model looks for
            "labels": [0, 1],
            "numerical": [c for c in breast_cancer().columns if c != "target"],
            "split": RANDOM_SPLIT,
            # honest predictors: a tumour's size alone separates the classes well (single-feature ROC-AUC
            # up to 0.97); the default 0.75 flags them, and the error says to raise it for such a table
            "leakage": {"max_single_feature_auc": 0.99},
        },
    ),
    Table(
        "fair",
        "statsmodels datasets.fair (real)",
        "mostly categorical (coded), yes/no target, a post-outcome column",
        fair,
        {
            "target": "had_affair",
            "positive_label": "yes",
            "labels": ["no", "yes"],
            "numerical": ["age", "yrs_married"],
            "categorical": ["rate_marriage", "children", "religious", "educ", "occupation", "occupation_husb"],
            "excluded": {"affairs": {"reason": "the target is derived from it", "post_outcome": True}},
            "split": RANDOM_SPLIT,
        },
    ),
    Table(
        "anes96",
        "statsmodels datasets.anes96 (real)",
        "small (944 rows), 0/1 target, ordinal scales as categories, a derived column excluded",
        anes96,
        {
            "target": "vote",
            "positive_label": 1,  # Dole
            "labels": [0, 1],
            "numerical": ["popul", "age"],
            "categorical": ["TVnews", "selfLR", "ClinLR", "DoleLR", "PID", "educ", "income"],
            "excluded": {"logpopul": {"reason": "log of popul: the same information twice"}},
            "split": RANDOM_SPLIT,
            # party identification alone predicts the vote (single-feature ROC-AUC 0.94): honest, known before
            "leakage": {"max_single_feature_auc": 0.97},
        },
    ),
    Table(
        "orders",
        "generated (seed 11)",
        "split on a date (a batch per month after September), an id, a post-outcome column, drift",
        orders,
        {
            "target": "repeat_purchase",
            "positive_label": "yes",
            "labels": ["no", "yes"],
            "numerical": ["basket_value", "items"],
            "categorical": ["channel", "region"],
            "excluded": {
                "order_id": {"reason": "an identifier"},
                "ordered_at": {"reason": "when: splits the data, not a feature"},
                "rated_first_order": {"reason": "known only after a repeat purchase", "post_outcome": True},
            },
            "split": {
                "strategy": "range",
                "column": "ordered_at",
                "reference": {"end": "2024-10-01"},
                "batch_period": "month",
            },
        },
    ),
    Table(
        "claims",
        "generated (seed 13)",
        "heavy missing values (15-45% per column), two all-empty columns, a text target",
        claims,
        {
            "target": "outcome",
            "positive_label": "fraud",
            "labels": ["fraud", "ok"],
            "numerical": [*(f"amount_{i}" for i in range(6)), "prior_claims"],
            "nullable_numerical": [*(f"amount_{i}" for i in range(6)), "prior_claims"],
            "categorical": ["kind", "agent", "state"],
            "excluded": {
                "Unnamed: 11": {"reason": "empty: the export's trailing commas"},
                "Unnamed: 12": {"reason": "empty: the export's trailing commas"},
            },
            "split": RANDOM_SPLIT,
        },
    ),
    Table(
        "wide",
        "generated (scikit-learn make_classification, seed 17)",
        "wide: 120 numbers and 3 categories, 0/1 target, 20% positive",
        wide,
        {
            "target": "label",
            "positive_label": 1,
            "labels": [0, 1],
            "numerical": [f"x{i:03d}" for i in range(120)],
            "categorical": ["segment", "tier", "site"],
            "split": RANDOM_SPLIT,
            "leakage": {"max_single_feature_auc": 0.9},  # one informative column reaches 0.76 on its own
        },
    ),
)


def by_name(name: str) -> Table:
    for table in TABLES:
        if table.name == name:
            return table
    raise KeyError(f"no table {name!r}; known: {[t.name for t in TABLES]}")
