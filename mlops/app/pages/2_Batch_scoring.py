"""Upload a CSV of rows, download it scored; rows the predictor rejects are listed with the reasons."""

import io

import pandas as pd
import streamlit as st

from mlops.app import ui
from mlops.core.lifecycle import campaign
from mlops.core.serving.predictor_client import InvalidInput, PredictorError, score_batch

settings = ui.setup("Batch scoring")
client = ui.predictor(settings)

with ui.section(stop=True):
    served = client.model()
st.caption(
    f"Scored by **{served.name} v{served.version}** at threshold {served.threshold:.3f}. The CSV needs a header "
    f"row with exactly these columns (an empty cell is a missing value): `{', '.join(served.input_schema.features)}`."
)

EXAMPLE_ROWS = 200
upload = st.file_uploader(f"CSV of {settings.presentation.rows}", type=["csv"])
# ?example=1 in the URL presses the button (a shareable demo link; the screenshots use it).
example = st.button(
    f"...or try {EXAMPLE_ROWS} {settings.presentation.rows} of the latest labeled batch"
) or st.query_params.get("example")
if upload is not None:
    name, data = upload.name, upload.getvalue()
elif example:
    try:
        labeled = campaign.latest_labeled(settings)
    except FileNotFoundError as exc:
        st.warning(str(exc))
        st.stop()
    name = f"{labeled.name.replace(':', '-')}-sample.csv"
    data = labeled.frame[settings.dataset.features].head(EXAMPLE_ROWS).to_csv(index=False).encode()
else:
    st.stop()
if (problem := ui.upload_problem(data, settings)) is not None:
    st.error(problem)
    st.stop()

key = (name, len(data), served.version)
if st.session_state.get("batch_key") != key:
    with ui.section(stop=True), st.spinner("Scoring..."):
        try:
            st.session_state["batch"] = score_batch(client, data)
        except InvalidInput as exc:
            problems = "\n".join(f"- **{e.field}**: {e.reason}" for e in exc.errors)
            st.error(f"The file cannot be scored: {str(exc).split(':')[0]}.\n{problems}")
            st.stop()
        except PredictorError as exc:
            st.error(f"The file cannot be scored: {exc}")
            st.stop()
    st.session_state["batch_key"] = key
result = st.session_state["batch"]

a, b = st.columns(2)
a.metric("Rows scored", f"{result.scored_rows:,}")
b.metric("Rows rejected", f"{result.rejected_rows:,}")

if result.scored_rows:
    scored = pd.read_csv(io.BytesIO(result.scored_csv))
    st.download_button(
        "Download the scored CSV",
        result.scored_csv,
        file_name=name.removesuffix(".csv") + "-scored.csv",
        mime="text/csv",
        type="primary",
    )
    to_call = scored["decision"].astype(str).str.lower().eq("true")
    words = settings.presentation
    st.markdown(f"**{int(to_call.sum()):,}** of {len(scored):,} {words.rows} are above the threshold: {words.action}.")
    first = ["probability", "decision"]
    preview = scored[first + [c for c in scored.columns if c not in first]].sort_values("probability", ascending=False)
    st.caption(f"Preview, most likely {words.positives} first:")
    st.dataframe(preview.head(200), hide_index=True)

if result.invalid:
    st.subheader("Rejected rows")
    invalid = pd.DataFrame([vars(i) for i in result.invalid])
    st.dataframe(invalid, hide_index=True)
    st.download_button("Download the rejected rows' reasons", invalid.to_csv(index=False), "rejected.csv", "text/csv")
