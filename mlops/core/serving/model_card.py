"""The model card: what deploy says about the model it deploys, defined once.

``model.json`` in the predictor's payload is a :class:`ModelCard`: the payload writer builds it from the
registered version, the predictor reads and validates it at start-up and on reload (a card that does not
parse is refused with the field and the reason), and ``GET /model`` answers a :class:`ServedModel`: the card
without the payload's file layout, plus how the predictor scores. The OpenAPI document's schema for that
answer and the predictor client's parser derive from the same classes.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops.core.data.schema import FeatureSchema

MODEL_JSON = "model.json"


class ModelCardError(ValueError):
    """A model card is missing or does not parse; the message names the file, the field and the reason."""


class CardFields(BaseModel):
    """What a client may know about the served model."""

    # `schema` is the card's field name on the wire; in Python it is `feature_schema` (BaseModel has a
    # `schema` method of its own).
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    name: str
    version: str
    alias: str | None = None
    threshold: float
    metrics: dict[str, float] = Field(default_factory=dict)
    trained_at: str | None = None
    family: str | None = None
    run_id: str | None = None
    feature_schema: dict[str, Any] = Field(alias="schema")

    @cached_property
    def input_schema(self) -> FeatureSchema:
        """The features the model takes, typed (``schema`` on the wire)."""
        return FeatureSchema.from_dict(self.feature_schema)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)


class ModelCard(CardFields):
    """``model.json``: the card and the model directory it describes (``model-<version>``)."""

    model_dir: str

    @classmethod
    def read(cls, folder: Path) -> ModelCard | None:
        """The card in a payload folder; ``None`` when there is none yet."""
        path = folder / MODEL_JSON
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ModelCardError(f"{path} is unreadable: {exc}") from exc
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, where: str = MODEL_JSON) -> ModelCard:
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
            raise ModelCardError(f"{where}: {problems}") from exc


class ServedModel(CardFields):
    """``GET /model``: the card of the model this worker serves and how it scores."""

    scorer: Literal["compiled", "pipeline"]
    compiled_trees: bool

    @classmethod
    def of(cls, card: ModelCard, scorer: str, compiled_trees: bool) -> ServedModel:
        fields = card.model_dump(by_alias=True, exclude={"model_dir"})
        return cls.model_validate({**fields, "scorer": scorer, "compiled_trees": compiled_trees})

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The answer's JSON Schema (OpenAPI 3.1 is JSON Schema 2020-12), field names as on the wire."""
        return cls.model_json_schema(by_alias=True)
