"""The worked example's data: leakage check, seasonal splits, stratification, reports."""

import json
from pathlib import Path

import pandas as pd
import pytest

from mlops.core import config
from mlops.core.data import leakage, preparation

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bank_settings(bank_csv: Path) -> config.Settings:
    return config.load(environ={"MLOPS_ROOT": str(ROOT), "MLOPS_DATASET__SOURCE__PATH": str(bank_csv)})


@pytest.fixture(scope="module")
def raw(bank_settings: config.Settings) -> pd.DataFrame:
    return preparation.load_raw(bank_settings, allow_download=False)


def test_leakage_check_flags_duration_on_its_own_score(raw: pd.DataFrame, bank_settings: config.Settings) -> None:
    reference, _ = preparation.partition(raw, bank_settings)
    results = {r.column: r for r in leakage.check(reference, bank_settings)}
    duration = results["duration"]
    assert duration.single_feature_auc > bank_settings.dataset.leakage.max_single_feature_auc
    assert duration.flagged and "single-feature ROC-AUC" in duration.reason and "post-outcome" in duration.reason
    assert [c for c, r in results.items() if r.flagged] == ["duration"]


def test_leakage_check_fails_when_duration_is_a_feature(raw: pd.DataFrame, bank_csv: Path) -> None:
    leaky = config.load(
        environ={
            "MLOPS_ROOT": str(ROOT),
            "MLOPS_DATASET__SOURCE__PATH": str(bank_csv),
            "MLOPS_DATASET__EXCLUDED": "{}",
            "MLOPS_DATASET__NUMERICAL": "[age, balance, day_of_week, duration, campaign, pdays, previous]",
        }
    )
    reference, _ = preparation.partition(raw, leaky)
    with pytest.raises(leakage.LeakageError, match="duration"):
        leakage.enforce(leakage.check(reference, leaky))


def test_splits_do_not_overlap_and_keep_seasons_apart(raw: pd.DataFrame, bank_settings: config.Settings) -> None:
    parts = preparation.split(raw.assign(row_id=range(len(raw))), bank_settings)
    ids = {name: set(frame["row_id"]) for name, frame in parts.frames().items()}
    names = list(ids)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not ids[a] & ids[b], f"{a} and {b} share rows"
    assert sum(len(v) for v in ids.values()) == len(raw)
    spec = bank_settings.dataset.split
    for name in ("train", "validation", "test"):
        assert set(getattr(parts, name)["month"]) <= set(spec.reference)
    assert set(parts.batches["summer"]["month"]) == {"jun", "jul", "aug"}
    assert set(parts.batches["fall"]["month"]) == {"sep", "oct", "nov"}
    assert (len(parts.batches["summer"]), len(parts.batches["fall"])) == (18_483, 5_287)


def test_reference_split_is_stratified(raw: pd.DataFrame, bank_settings: config.Settings) -> None:
    parts = preparation.split(raw, bank_settings)
    rates = [preparation.labels(getattr(parts, n), bank_settings).mean() for n in preparation.SPLITS]
    assert max(rates) - min(rates) < 0.002
    assert len(parts.train) + len(parts.validation) + len(parts.test) == 21_441


def test_prepare_writes_parquet_and_reports(prepared: object, settings: config.Settings) -> None:
    folder = settings.prepared_dir
    for name in preparation.SPLITS:
        assert (folder / f"{name}.parquet").is_file()
    assert sorted(p.stem for p in (folder / "batches").glob("*.parquet")) == ["fall", "summer"]
    report = json.loads((folder / "data_report.json").read_text())
    assert report["parts"]["batch:summer"]["rows"] == 18_483
    assert report["parts"]["train"]["missing_share"]["poutcome"] > 0.5
    leak = json.loads((folder / "leakage_report.json").read_text())
    assert leak[0]["column"] == "duration" and leak[0]["flagged"]
    train = preparation.load_split(settings, "train")
    assert train["age"].dtype == "float64" and train["job"].isna().any()


def test_an_empty_column_scores_as_uninformative_not_a_crash(raw: pd.DataFrame, bank_settings: config.Settings) -> None:
    """A CSV whose header ends in ",," has columns with no value at all (#12, 2)."""
    reference, _ = preparation.partition(raw, bank_settings)
    reference = reference.assign(empty_number=float("nan"), empty_text=None)
    excluded = {
        **bank_settings.dataset.excluded,
        "empty_number": config.ExcludedColumn(reason="no values"),
        "empty_text": config.ExcludedColumn(reason="no values"),
    }
    settings = bank_settings.model_copy(
        update={"dataset": bank_settings.dataset.model_copy(update={"excluded": excluded})}
    )
    results = {r.column: r for r in leakage.check(reference, settings)}
    assert results["empty_number"].single_feature_auc == results["empty_text"].single_feature_auc == 0.5
    assert not results["empty_number"].flagged and results["duration"].flagged
