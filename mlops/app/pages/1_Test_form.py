"""One client, scored by the predictor: a form built from the served model's feature schema."""

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from mlops.app import ui
from mlops.core.serving.api_bodies import Prediction
from mlops.core.serving.predictor_client import InvalidInput, PredictorError

MISSING = "(missing)"

settings = ui.setup("Test form")
client = ui.predictor(settings)

with ui.section(stop=True):
    served = client.model()
st.caption(
    f"Served model: **{served.name} v{served.version}** ({served.family}), decision threshold "
    f"{served.threshold:.3f}. Fields and their bounds come from the model's feature schema."
)

record: dict[str, Any] = {}
with st.form("client"):
    columns = st.columns(3)
    fields = served.input_schema.features
    for i, name in enumerate(fields):
        column = columns[i % 3]
        if name in served.input_schema.numerical:
            num = served.input_schema.numerical[name]
            if num.integer:
                value: Any = column.number_input(
                    name, int(num.minimum), int(num.maximum), round(num.median), step=1, key=f"field_{name}"
                )
            else:
                value = column.number_input(name, num.minimum, num.maximum, num.median, key=f"field_{name}")
            if num.nullable and column.checkbox(f"{name} unknown", key=f"missing_{name}"):
                value = None
        else:
            cat = served.input_schema.categorical[name]
            options = [*cat.categories, *([MISSING] if cat.nullable else [])]
            chosen = column.selectbox(name, options, key=f"field_{name}")
            value = None if chosen == MISSING else chosen
        record[name] = value
    submitted = st.form_submit_button("Score this client", type="primary")

# ?example=1 in the URL scores the form's defaults at once (a shareable demo link; the screenshots use it).
if submitted or (st.query_params.get("example") and "result" not in st.session_state):
    st.session_state.pop("result", None)
    with ui.section(stop=True):
        try:
            # /explain scores the record too: one request, one logged prediction.
            explanation = client.explain(record)
            scored = Prediction(probability=explanation.probability, decision=explanation.decision)
            version, explain_error = explanation.model_version, None
        except InvalidInput as exc:
            problems = "\n".join(f"- **{e.field}**: {e.reason}" for e in exc.errors)
            st.error(f"The predictor rejected the record:\n{problems}")
            st.stop()
        except PredictorError as exc:
            if exc.status != 409:  # 409: this model family has no per-feature contributions
                st.error(str(exc))
                st.stop()
            answer = client.predict([record])
            explanation, scored, version, explain_error = None, answer.predictions[0], answer.model_version, str(exc)
    st.session_state["result"] = (record, scored, version, explanation, explain_error)

if "result" in st.session_state:
    record, scored, version, explanation, explain_error = st.session_state["result"]
    a, b, c = st.columns(3)
    a.metric(settings.presentation.probability, f"{scored.probability:.1%}")
    b.metric(
        "Decision",
        settings.presentation.action if scored.decision else settings.presentation.no_action,
        f"threshold {served.threshold:.3f}",
        delta_color="off",
        delta_arrow="off",
    )
    c.metric("Model version", f"v{version}")
    if explanation is None:
        st.info(f"No explanation for this model: {explain_error}")
    else:
        top = explanation.top(10)
        frame = pd.DataFrame(
            {
                "feature": [f"{name} = {record.get(name)}" for name, _ in top],
                "contribution": [value for _, value in top],
            }
        )
        frame["direction"] = frame["contribution"].map(lambda v: "raises" if v > 0 else "lowers")
        st.subheader("Why: the top feature contributions")
        st.altair_chart(
            alt.Chart(frame)
            .mark_bar()
            .encode(
                x=alt.X("contribution:Q", title="contribution to the log-odds"),
                y=alt.Y(
                    "feature:N", sort=alt.EncodingSortField("contribution", op="sum", order="descending"), title=None
                ),
                color=alt.Color(
                    "direction:N", scale=alt.Scale(domain=["raises", "lowers"], range=["#2ca02c", "#d62728"])
                ),
                tooltip=["feature", alt.Tooltip("contribution:Q", format="+.3f")],
            ),
            width="stretch",
        )
        st.caption(
            f"Base value {explanation.base_value:+.3f} (log-odds of the average client) plus the contributions "
            f"gives this client's score."
        )
