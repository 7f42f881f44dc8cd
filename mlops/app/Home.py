"""The app's front page: what is served, what is registered, what is recorded, and where to go next."""

import streamlit as st

from mlops.app import ui
from mlops.core.monitoring import insights

settings = ui.setup()
words = settings.presentation
st.markdown(
    f"{words.description} These pages test it, score files with it, show how it was chosen and how it behaves "
    "in production, and plan a campaign with it."
)

predictor_column, mlflow_column, database_column = st.columns(3)

with predictor_column:
    st.subheader("Predictor")
    with ui.section():
        client = ui.predictor(settings)
        ready, reason = client.ready()
        if ready:
            served = client.model()
            st.metric(
                "Serving", f"{served.name} v{served.version}", served.family, delta_color="off", delta_arrow="off"
            )
            st.caption(
                f"Threshold {served.threshold:.3f}, trained {served.trained_at}. {settings.predictor_public_url}"
            )
        else:
            st.warning(f"Up at {settings.predictor_public_url} but not ready: {reason}")

with mlflow_column:
    st.subheader("MLflow registry")
    with ui.section():
        versions = insights.registered_versions(settings)
        aliased = [v.label for v in versions if v.aliases]
        st.metric("Registered versions", len(versions))
        st.caption(f"{', '.join(aliased) or 'no aliases yet'}. {settings.tracking_ui_url or settings.tracking_uri}")

with database_column:
    st.subheader("Monitoring database")
    with ui.section():
        counts = insights.table_counts(settings.monitoring_db)
        st.metric("Predictions logged", f"{counts['predictions']:,}")
        st.caption(
            f"Monitor runs: {counts['monitor_runs']} · alerts: {counts['alerts']} · "
            f"model events: {counts['model_events']}. {insights.hide_password(settings.monitoring_db)}"
        )

st.divider()
st.page_link("pages/1_Test_form.py", label=f"Test form: score one {words.row} and see why", icon=":material/science:")
st.page_link(
    "pages/2_Batch_scoring.py", label="Batch scoring: upload a CSV, download it scored", icon=":material/upload_file:"
)
st.page_link(
    "pages/3_Models.py", label="Models: versions, metrics, curves, feature importance", icon=":material/inventory_2:"
)
st.page_link(
    "pages/4_Monitoring.py", label="Monitoring: drift, predictions, alerts, retraining", icon=":material/monitoring:"
)
st.page_link(
    "pages/5_Campaign_planner.py",
    label=f"Campaign planner: how many {words.actions}, how many {words.outcomes}",
    icon=":material/call:",
)
