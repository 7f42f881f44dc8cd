"""Drift over time, per-column drift of one batch, prediction volume and scores, alerts and model events."""

import altair as alt
import pandas as pd
import streamlit as st

from mlops.app import ui
from mlops.core.monitoring import insights

settings = ui.setup("Monitoring")
url = settings.monitoring_db

with ui.section(stop=True):
    runs = insights.drift_history(url)

st.subheader("Drift over time")
if runs.empty:
    st.info("No monitor runs yet: run the monitor pipeline on a batch.")
else:
    runs["run"] = runs["id"].astype(str) + " · " + runs["batch"]
    long = runs.melt(
        id_vars=["id", "computed_at", "run", "model_version"],
        value_vars=["drifted_share", "prediction_drift", "missing_share"],
        var_name="measure",
        value_name="value",
    ).dropna(subset=["value"])
    chart = (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("run:N", sort=alt.EncodingSortField("id"), title="monitor run (id · batch), oldest first"),
            y=alt.Y("value:Q", title=None),
            color=alt.Color("measure:N", title=None),
            tooltip=["run", "computed_at", "model_version", "measure", alt.Tooltip("value:Q", format=".3f")],
        )
    )
    threshold = (
        alt.Chart(pd.DataFrame({"y": [settings.monitoring.prediction_drift_threshold]}))
        .mark_rule(strokeDash=[4, 4], color="red")
        .encode(y="y:Q")
    )
    st.altair_chart(chart + threshold, width="stretch")
    st.caption(
        "Dashed line: the prediction-drift alert threshold's floor "
        f"({settings.monitoring.prediction_drift_threshold}); a small batch's own threshold is higher, from the "
        "drift a sample of its size shows by chance."
    )
    shown = [
        "id",
        "computed_at",
        "batch",
        "model_version",
        "rows",
        "drifted_columns",
        "drifted_share",
        "dataset_drift",
        "prediction_drift",
        "prediction_drift_method",
        "missing_share",
        "roc_auc",
        "pr_auc",
    ]
    st.dataframe(runs[shown].iloc[::-1], hide_index=True)

    st.subheader("Per-column drift of one run")
    options = runs["id"].tolist()[::-1]
    labels = dict(zip(runs["id"], runs["run"] + " (" + runs["computed_at"].astype(str).str[:19] + ")", strict=True))
    run_id = st.selectbox("Monitor run", options, format_func=labels.get)
    with ui.section(stop=True):
        columns = insights.column_drift(url, int(run_id))
    if columns.empty:
        st.info("This run recorded no per-column drift.")
    else:
        bars = (
            alt.Chart(columns)
            .mark_bar()
            .encode(
                x=alt.X("score:Q", title="drift score (p-value or distance, per method)"),
                y=alt.Y("column_name:N", sort="-x", title=None),
                color=alt.Color("drifted:N", scale=alt.Scale(domain=[True, False], range=["#d62728", "#2ca02c"])),
                tooltip=["column_name", "method", "score", "threshold", "drifted"],
            )
        )
        st.altair_chart(bars, width="stretch")
        st.dataframe(columns, hide_index=True)

st.subheader("Predictions")
unit = st.radio("Volume per", ["hour", "day"], horizontal=True)
with ui.section(stop=True):
    volume = insights.prediction_volume(url, unit)
    scores = insights.recent_scores(url)
if volume.empty:
    st.info("The predictor has logged no predictions yet.")
else:
    left, right = st.columns(2)
    left.altair_chart(
        alt.Chart(volume)
        .mark_bar()
        .encode(
            x=alt.X("period:T", title=unit),
            y=alt.Y("predictions:Q", title="scored records"),
            color=alt.Color("model_version:N", title="version"),
        ),
        width="stretch",
    )
    right.altair_chart(
        alt.Chart(scores)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", bin=alt.Bin(maxbins=40), title="probability"),
            y=alt.Y("count():Q", title="records"),
            color=alt.Color("model_version:N", title="version"),
        ),
        width="stretch",
    )
    right.caption(f"Latest {len(scores):,} scored records; {scores['decision'].mean():.1%} were above the threshold.")

st.subheader("Alerts and retraining")
with ui.section(stop=True):
    alerts = insights.alert_history(url)
    events = insights.model_history(url)
st.markdown("**Alerts received** (Grafana's webhook) and what was done about them")
if alerts.empty:
    st.info("No alert has fired.")
else:
    st.dataframe(alerts, hide_index=True)
st.markdown("**Model events**: promotions, rejections and rollbacks by deploy and retrain")
if events.empty:
    st.info("No model event yet.")
else:
    st.dataframe(events, hide_index=True)
