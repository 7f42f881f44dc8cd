"""For a budget of N actions (the bank's calls): positive outcomes when acting on the top N rows by score versus
N at random. The words come from the configuration's ``presentation``."""

import altair as alt
import pandas as pd
import streamlit as st

from mlops.app import ui
from mlops.core.config import Settings
from mlops.core.lifecycle import campaign
from mlops.core.monitoring import insights

settings = ui.setup("Campaign planner")
words = settings.presentation


@st.cache_resource(show_spinner="Loading the model from MLflow...", max_entries=3)
def model(_settings: Settings, tracking_uri: str, version: str):  # type: ignore[no-untyped-def]
    return insights.load_model(_settings, version)


@st.cache_data(show_spinner="Scoring the labeled rows...", max_entries=3)
def scores(
    _settings: Settings, tracking_uri: str, version: str, path: str, modified: float
) -> tuple[list[int], list[float]]:
    labeled = campaign.latest_labeled(_settings)
    y, proba = campaign.scored(model(_settings, tracking_uri, version), labeled, _settings)
    return y.tolist(), proba.tolist()


try:
    labeled = campaign.latest_labeled(settings)
except FileNotFoundError as exc:
    st.warning(str(exc))
    st.stop()

serving_version = None
with ui.section(consequence="The version it serves cannot be preselected."):
    serving_version = ui.predictor(settings).model().version
with ui.section(stop=True):
    versions = insights.registered_versions(settings)
if not versions:
    st.info("No model is registered yet: run the train pipeline.")
    st.stop()
labels = {
    v.version: f"v{v.version} {('(' + ', '.join(v.aliases) + ')') if v.aliases else ''}".strip() for v in versions
}
default = next((i for i, v in enumerate(versions) if v.version == serving_version), 0)
version = st.selectbox(
    "Model version", list(labels), index=default, format_func=labels.get, help="Defaults to the one being served."
)

with ui.section(stop=True):
    y, proba = scores(settings, settings.tracking_uri, version, str(labeled.path), labeled.path.stat().st_mtime)

population = len(y)
st.caption(
    f"Measured on **{labeled.name}**, the newest data with known outcomes ({population:,} {words.rows}, "
    f"{sum(y):,} {words.positives})."
)
calls = st.slider(
    f"Budget: number of {words.actions}", 1, population, max(1, population // 10), step=max(1, population // 200)
)
result = campaign.plan(y, proba, calls)

st.markdown(f"**{words.outcomes.capitalize()} from {calls:,} {words.actions}**")
a, b, c, d = st.columns(4)
a.metric("Top N by score", f"{result.by_model:,}", f"{result.by_model - result.at_random:+,.0f} vs random")
b.metric("N at random (expected)", f"{result.at_random:,.0f}")
c.metric("Lift", f"{result.lift:.2f}x")
d.metric(
    f"{words.positives.capitalize()} reached", f"{result.share_found:.1%}", help=f"share of all the {words.positives}"
)
st.caption(
    f"The model's own probabilities expect {result.model_expected:,.0f} {words.outcomes} from its top {calls:,}."
)

curve = campaign.gain_curve(y, proba)
gain = curve.melt(id_vars=["share_called"], value_vars=["gain", "random_gain"], var_name="list", value_name="found")
gain["list"] = gain["list"].map({"gain": "top N by score", "random_gain": "random"})
budget = alt.Chart(pd.DataFrame({"x": [calls / population]})).mark_rule(strokeDash=[4, 4]).encode(x="x:Q")
left, right = st.columns(2)
left.markdown(f"**Cumulative gain**: share of {words.positives} reached")
left.altair_chart(
    alt.Chart(gain)
    .mark_line()
    .encode(
        x=alt.X("share_called:Q", title=f"share of {words.rows} in the budget", axis=alt.Axis(format="%")),
        y=alt.Y("found:Q", title=f"share of {words.positives} reached", axis=alt.Axis(format="%")),
        color=alt.Color("list:N", title=None),
    )
    + budget,
    width="stretch",
)
right.markdown(f"**Lift**: times better than {words.actions} at random")
right.altair_chart(
    alt.Chart(curve.dropna(subset=["lift"]))
    .mark_line()
    .encode(
        x=alt.X("share_called:Q", title=f"share of {words.rows} in the budget", axis=alt.Axis(format="%")),
        y=alt.Y("lift:Q", title="lift"),
    )
    + budget,
    width="stretch",
)
