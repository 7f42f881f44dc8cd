"""The model card (model.json) and GET /model's answer: one pydantic model each, the wire names kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.core.serving.model_card import MODEL_JSON, ModelCard, ModelCardError, ServedModel

SCHEMA = {"features": ["age", "job"], "numerical": {}, "categorical": {}}


def card() -> ModelCard:
    return ModelCard(name="m", version="3", threshold=0.25, model_dir="model-3", feature_schema=SCHEMA)


def test_the_card_round_trips_with_the_wire_names(tmp_path: Path) -> None:
    (tmp_path / MODEL_JSON).write_text(card().to_json())
    on_disk = json.loads((tmp_path / MODEL_JSON).read_text())
    assert on_disk["schema"] == SCHEMA and "feature_schema" not in on_disk
    assert ModelCard.read(tmp_path) == card()
    assert ModelCard.read(tmp_path / "nothing-here") is None


def test_a_broken_card_names_each_field_and_reason() -> None:
    with pytest.raises(
        ModelCardError, match=r"threshold: Field required.*metrics\.auc: Input should be a valid number"
    ):
        ModelCard.parse(
            json.dumps({"name": "m", "version": "1", "model_dir": "d", "schema": {}, "metrics": {"auc": "x"}})
        )
    with pytest.raises(ModelCardError, match="Invalid JSON"):
        ModelCard.parse("{not json")


def test_the_served_answer_is_the_card_without_its_layout() -> None:
    served = ServedModel.of(card(), "compiled", compiled_trees=True)
    body = served.model_dump(mode="json", by_alias=True)
    assert body["schema"] == SCHEMA and "model_dir" not in body and body["scorer"] == "compiled"
    schema = ServedModel.json_schema()
    assert {"name", "version", "threshold", "schema", "scorer", "compiled_trees"} <= set(schema["required"])
    assert schema["properties"]["scorer"]["enum"] == ["compiled", "pipeline"]
    with pytest.raises(ValueError, match="scorer"):
        ServedModel.of(card(), "guesswork", compiled_trees=False)
