"""Registered versions with their aliases and metrics, the chosen version's curves and feature importance."""

import altair as alt
import pandas as pd
import streamlit as st

from mlops.app import ui
from mlops.core.monitoring import insights

settings = ui.setup("Models")

serving_version: str | None = None
with ui.section(consequence="Which version is serving is unknown."):
    served = ui.predictor(settings).model()
    serving_version = served.version
    st.success(f"The predictor serves **{served.name} v{served.version}** ({served.family}, alias {served.alias}).")

with ui.section(stop=True):
    versions = insights.registered_versions(settings)
if not versions:
    st.info(f"No version of {settings.training.model_name!r} is registered yet: run the train pipeline.")
    st.stop()

st.subheader(f"Registered versions of {settings.training.model_name}")
st.dataframe(
    insights.versions_table(versions, serving_version),
    hide_index=True,
    column_config={"serving": st.column_config.CheckboxColumn("serving")},
)

labels = {
    v.version: f"v{v.version} {('(' + ', '.join(v.aliases) + ')') if v.aliases else ''}".strip() for v in versions
}
default = next((i for i, v in enumerate(versions) if v.version == serving_version), 0)
chosen_version = st.selectbox("Version", list(labels), index=default, format_func=labels.get)
chosen = next(v for v in versions if v.version == chosen_version)

with ui.section(stop=True):
    try:
        artifacts = insights.version_artifacts(settings, chosen)
    except (LookupError, ValueError) as exc:
        st.warning(f"No plots for v{chosen.version}: {exc}")
        st.stop()

st.caption(f"Curves on the validation split, logged by candidate run `{artifacts.run_id}`.")
left, middle, right = st.columns(3)
for column, key, caption in (
    (left, "roc", "ROC"),
    (middle, "pr", "Precision-recall"),
    (right, "calibration", "Calibration"),
):
    if key in artifacts.plots:
        column.image(artifacts.plots[key], caption=caption, width="stretch")

st.subheader("Feature importance")
if artifacts.importance and any(artifacts.importance.values()):
    frame = pd.DataFrame({"feature": list(artifacts.importance), "importance": list(artifacts.importance.values())})
    chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("importance:Q", title="importance (one-hot columns summed per feature)"),
            y=alt.Y("feature:N", sort="-x", title=None),
        )
    )
    st.altair_chart(chart, width="stretch")
else:
    st.info(f"The {chosen.family} model exposes no feature importance.")
