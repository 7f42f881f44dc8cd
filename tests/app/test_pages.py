"""Every page of the app, run by Streamlit's AppTest against the real predictor, MLflow and monitoring DB."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from mlops.core.lifecycle import campaign
from mlops.core.monitoring import insights
from tests.app.conftest import LOGGED_RECORDS, AppPlatform, page

pytestmark = [pytest.mark.postgres, pytest.mark.mlflow, pytest.mark.mage, pytest.mark.slow]


def no_trouble(at: AppTest) -> None:
    """The page ran to the end: no exception, no error, no warning."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert not at.warning, [w.value for w in at.warning]


def charts(at: AppTest) -> list[pd.DataFrame]:
    """The data behind each Altair chart of the page (Streamlit sends it as Arrow IPC streams)."""
    frames = []
    for chart in at.get("vega_lite_chart"):
        (dataset, *_) = [d for d in chart.proto.datasets if d.data.data]  # the layered rule's data comes last
        frames.append(pa.ipc.open_stream(dataset.data.data).read_pandas())
    return frames


def test_home_shows_what_is_served_registered_and_recorded(app_env: AppPlatform) -> None:
    at = page("home").run()
    no_trouble(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Serving"] == f"{app_env.settings.training.model_name} v{app_env.served_version}"
    assert metrics["Registered versions"] == "2"
    assert int(metrics["Predictions logged"].replace(",", "")) >= 300


def test_the_form_is_the_served_schema_and_scores_with_an_explanation(app_env: AppPlatform) -> None:
    served = app_env.client.model()
    at = page("test_form").run()
    no_trouble(at)
    numbers = {n.label: n for n in at.number_input}
    choices = {s.label: s for s in at.selectbox}
    assert set(numbers) == set(served.input_schema.numerical)
    assert set(choices) == set(served.input_schema.categorical)
    for name, spec in served.input_schema.numerical.items():
        assert (numbers[name].min, numbers[name].max) == (spec.minimum, spec.maximum), name
    for name, spec in served.input_schema.categorical.items():
        assert list(choices[name].options) == spec.categories + (["(missing)"] if spec.nullable else []), name
    nullable = next(name for name, spec in served.input_schema.categorical.items() if spec.nullable)

    choices[nullable].set_value("(missing)")
    numbers["age"].set_value(61)
    at.button[0].click().run()
    no_trouble(at)

    record = {name: numbers[name].value for name in served.input_schema.numerical}
    record |= {name: (None if s.value == "(missing)" else s.value) for name, s in choices.items()}
    assert record["age"] == 61 and record[nullable] is None
    expected = app_env.client.predict([record]).predictions[0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Probability of subscribing"] == f"{expected.probability:.1%}"
    assert metrics["Decision"] == ("call" if expected.decision else "do not call")
    assert metrics["Model version"] == f"v{app_env.served_version}"
    (bars,) = charts(at)
    explanation = app_env.client.explain(record)
    top = explanation.top(10)
    assert bars["feature"].tolist() == [f"{name} = {record[name]}" for name, _ in top]
    assert bars["contribution"].tolist() == pytest.approx([value for _, value in top])


def _batch_csv(platform: AppPlatform, rows: int = 40) -> tuple[bytes, int]:
    """A CSV of real clients with two broken rows (an unknown category, a word for a number)."""
    frame = campaign.latest_labeled(platform.settings).frame[platform.settings.dataset.features].head(rows)
    frame = frame.astype(object)
    frame.iloc[3, frame.columns.get_loc("job")] = "astronaut"
    frame.iloc[7, frame.columns.get_loc("age")] = "forty"
    return frame.to_csv(index=False).encode(), rows


def test_batch_scoring_scores_the_valid_rows_and_lists_the_rejected_ones(app_env: AppPlatform) -> None:
    data, rows = _batch_csv(app_env)
    at = page("batch").run()
    no_trouble(at)
    at.file_uploader[0].upload("clients.csv", data, "text/csv").run()
    no_trouble(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Rows scored": str(rows - 2), "Rows rejected": "2"}
    result = at.session_state["batch"]
    scored = pd.read_csv(io.BytesIO(result.scored_csv))
    assert len(scored) == rows - 2 and {"probability", "decision"} <= set(scored.columns)
    assert scored["probability"].between(0, 1).all()
    invalid = {(i.line, i.field) for i in result.invalid}
    assert invalid == {(5, "job"), (9, "age")}  # the header is line 1
    assert any("astronaut" in i.reason for i in result.invalid)
    assert len(at.dataframe) == 2  # the scored preview and the rejected rows


def test_batch_scoring_says_what_is_wrong_with_the_file_as_a_whole(app_env: AppPlatform) -> None:
    frame = campaign.latest_labeled(app_env.settings).frame[app_env.settings.dataset.features].head(5)
    at = page("batch").run()
    at.file_uploader[0].upload("clients.csv", frame.drop(columns=["balance"]).to_csv(index=False).encode()).run()
    assert not at.exception
    (error,) = at.error
    assert "balance" in error.value and "required column is missing" in error.value


def test_models_page_lists_versions_aliases_metrics_and_the_served_one(app_env: AppPlatform) -> None:
    at = page("models").run()
    no_trouble(at)
    table = at.dataframe[0].value.set_index("version")
    assert table.loc[app_env.served_version, "aliases"] == "champion"
    assert table.loc[app_env.challenger_version, "aliases"] == "challenger"
    assert table["serving"].tolist() == [v == app_env.served_version for v in table.index]
    assert table.loc[app_env.served_version, "validation_roc_auc"] > 0.7
    assert at.selectbox[0].value == app_env.served_version
    assert len(at.image) == 3  # ROC, precision-recall, calibration
    (importance,) = charts(at)
    assert set(importance["feature"]) == set(app_env.settings.dataset.features)
    assert importance["importance"].sum() == pytest.approx(1.0)  # XGBoost's importances sum to one


def test_monitoring_page_shows_drift_predictions_and_model_events(app_env: AppPlatform) -> None:
    at = page("monitoring").run()
    no_trouble(at)
    runs = at.dataframe[0].value
    assert list(runs["batch"])[::-1] == list(app_env.settings.dataset.split.batches)
    columns = at.dataframe[1].value
    assert set(app_env.settings.dataset.features) <= set(columns["column_name"])
    oldest = runs.iloc[-1]
    at.selectbox[0].set_value(int(oldest["id"])).run()
    no_trouble(at)
    columns = at.dataframe[1].value
    features = columns[columns["column_name"].isin(app_env.settings.dataset.features)]
    assert features["drifted"].sum() == oldest["drifted_columns"]
    drift, per_column, volume, scores = charts(at)
    assert len(drift) > 0 and len(per_column) == len(columns)
    assert volume["predictions"].sum() >= LOGGED_RECORDS and scores["probability"].between(0, 1).all()
    alerts, events = at.dataframe[-2].value, at.dataframe[-1].value
    assert alerts["alertname"].tolist() == ["prediction_drift"] and alerts["action"].tolist() == ["retrain"]
    assert "promoted" in set(events["action"])


def test_campaign_planner_compares_top_n_by_score_with_random_calls(app_env: AppPlatform) -> None:
    at = page("campaign").run()
    no_trouble(at)
    at.slider[0].set_value(500).run()
    no_trouble(at)
    labeled = campaign.latest_labeled(app_env.settings)
    pipeline = insights.load_model(app_env.settings, app_env.served_version)
    y, proba = campaign.scored(pipeline, labeled, app_env.settings)
    top = np.argsort(-proba, kind="stable")[:500]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Top N by score"] == f"{int(y[top].sum()):,}"
    assert metrics["N at random (expected)"] == f"{500 * y.mean():,.0f}"
    assert float(metrics["Lift"].rstrip("x")) > 1.5
    assert len(charts(at)) == 2  # gain and lift


CHURN_WORDS = {
    "TITLE": "Churn: who to keep",
    "ROWS": "accounts",
    "POSITIVES": "churners",
    "OUTCOMES": "saved accounts",
    "PROBABILITY": "Probability of churning",
    "ACTION": "offer a discount",
    "NO_ACTION": "no offer",
    "ACTIONS": "offers",
}


def test_the_pages_speak_the_configured_words_not_the_banks(
    app_env: AppPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Titles, outcome and decision words come from `presentation` (#12, 11): another table's words replace
    every bank word on the front page, the test form and the campaign planner."""
    for key, value in CHURN_WORDS.items():
        monkeypatch.setenv(f"MLOPS_PRESENTATION__{key}", value)
    home = page("home").run()
    no_trouble(home)
    assert home.title[0].value == "Churn: who to keep"
    form = page("test_form").run()
    no_trouble(form)
    form.button[0].click().run()
    metrics = {m.label: m.value for m in form.metric}
    assert "Probability of churning" in metrics and metrics["Decision"] in ("offer a discount", "no offer")
    planner = page("campaign").run()
    no_trouble(planner)
    said = " ".join(
        [m.value for m in planner.markdown] + [c.value for c in planner.caption] + [planner.slider[0].label]
    )
    assert "Saved accounts from" in said and "churners" in said and "number of offers" in said
    for bank_word in ("subscri", "clients", " call"):
        assert bank_word not in said.lower(), bank_word
