"""The predictor API's response bodies, defined once: the app answers with them, the OpenAPI document publishes
their JSON Schema and the client validates what it receives against them (``GET /model``'s body is the model
card's :class:`~mlops.core.serving.model_card.ServedModel`; request records are the schema's own type).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(frozen=True)


class Status(Body):
    """``GET /health``: the process answers."""

    status: Literal["ok"] = "ok"


class Readiness(Body):
    """``GET /ready``: whether a champion is loaded (503 with the reason while not)."""

    ready: bool
    reason: str | None = None
    model_name: str | None = None
    model_version: str | None = None


class Prediction(Body):
    probability: float
    decision: bool


class Predictions(Body):
    """``POST /predict`` (JSON): one prediction per record, in order."""

    request_id: str
    model_name: str
    model_version: str
    threshold: float
    predictions: list[Prediction]


class Explanation(Body):
    """``POST /explain``: the record's prediction and each input feature's contribution to it."""

    request_id: str
    model_version: str
    probability: float
    decision: bool
    base_value: float
    contributions: dict[str, float]  # per input feature, in log-odds
    units: Literal["log-odds"] = "log-odds"

    def top(self, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` contributions largest in magnitude, largest first."""
        return sorted(self.contributions.items(), key=lambda kv: abs(kv[1]), reverse=True)[:n]


class Reloading(Body):
    """``POST /reload``: accepted; workers are replaced gracefully with the payload's version. Reloads
    coalesce: while one is in flight another call starts none (``already_in_progress``)."""

    status: Literal["reloading"] = "reloading"
    payload_version: str | None
    already_in_progress: bool = False
    detail: str | None = None


class FieldError(Body):
    field: str
    reason: str
    record: int | None = Field(None, ge=0)  # 0-based index of the record in a batch, when the error belongs to one


class ErrorBody(Body):
    """Every 4xx and 5xx: a message and one entry per bad field (at most 100 listed; ``error_count`` says all)."""

    error: str
    errors: list[FieldError] = Field(default_factory=list)
    error_count: int | None = None


PREDICTION_KEYS = tuple(Prediction.model_fields)  # ("probability", "decision")


def predictions_body(
    *,
    request_id: str,
    model_name: str,
    model_version: str,
    threshold: float,
    probabilities: list[float],
    decisions: list[bool],
) -> dict[str, Any]:
    """A :class:`Predictions` answer as its JSON object, the rows built as plain mappings of the model's own
    fields: a 100k-row answer in a quarter of the time that making a model per row takes (0.09 s, not 0.36 s)."""
    head = Predictions.model_construct(
        request_id=request_id, model_name=model_name, model_version=model_version, threshold=threshold, predictions=[]
    )
    rows = [dict(zip(PREDICTION_KEYS, pair, strict=True)) for pair in zip(probabilities, decisions, strict=True)]
    return {**dict(head), "predictions": rows}


BODIES: tuple[type[Body], ...] = (Status, Readiness, Predictions, Explanation, Reloading, ErrorBody)


def dump(body: Body) -> dict[str, Any]:
    """The JSON object the app sends: unset optional keys left out (a ready answer carries no ``reason``)."""
    return body.model_dump(mode="json", exclude_none=True)


def component_schemas(ref_template: str = "#/components/schemas/{model}") -> dict[str, Any]:
    """Every body's JSON Schema for the OpenAPI document's ``components.schemas``, nested types included."""
    out: dict[str, Any] = {}
    for body in BODIES:
        schema = body.model_json_schema(ref_template=ref_template, mode="serialization")
        out.update(schema.pop("$defs", {}))
        out[body.__name__] = schema
    return out
