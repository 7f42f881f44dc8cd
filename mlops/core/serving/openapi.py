"""The predictor's OpenAPI 3.1 document (``GET /openapi.json``).

The record schema is the request validator's own (:mod:`mlops.core.serving.request_validation`), so the document
says exactly what a request is checked against; ``GET /model``'s answer is the model card's schema
(:mod:`mlops.core.serving.model_card`); every other answer's schema is its body's own
(:mod:`mlops.core.serving.api_bodies`). Clients, the app's forms and the fuzz drill read this document.
"""

from __future__ import annotations

from typing import Any

from mlops.core.config import Settings
from mlops.core.serving import api_bodies
from mlops.core.serving.model_card import ServedModel

CSV_TYPE = "text/csv"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _responses(codes: dict[int, tuple[str, str]]) -> dict[str, Any]:
    """``{status: (description, schema name or "csv")}`` -> OpenAPI responses."""
    out: dict[str, Any] = {}
    for code, (description, schema_name) in codes.items():
        if schema_name == "csv":
            content = {CSV_TYPE: {"schema": {"type": "string"}}}
        else:
            content = {"application/json": {"schema": _ref(schema_name)}}
        out[str(code)] = {"description": description, "content": content}
    return out


def document(record_schema: dict[str, Any] | None, version: str | None, settings: Settings) -> dict[str, Any]:
    """OpenAPI 3.1 of the predictor; ``record_schema`` is the one requests are validated against (``None``:
    no model deployed yet)."""
    record: dict[str, Any] = record_schema or {
        "type": "object",
        "description": "no model deployed yet: every request answers 503",
    }
    max_rows = settings.serving.max_batch_rows
    bad_input = {
        400: ("malformed JSON or CSV", "ErrorBody"),
        413: (f"body over {settings.serving.max_body_bytes} bytes or over {max_rows} records", "ErrorBody"),
        415: ("unsupported Content-Type", "ErrorBody"),
        422: ("the records do not match the feature schema; every bad field is named", "ErrorBody"),
        503: ("no model deployed yet", "ErrorBody"),
    }
    csv_body = {
        "schema": {"type": "string"},
        "example": ",".join(settings.dataset.features) + "\n",
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{settings.project} predictor",
            "version": version or "none",
            "description": "Scores records with the deployed champion model. See docs/serving.md.",
        },
        "paths": {
            "/health": {
                "get": {"summary": "the process is alive", "responses": _responses({200: ("alive", "Status")})}
            },
            "/ready": {
                "get": {
                    "summary": "a model is loaded",
                    "responses": _responses({200: ("ready", "Readiness"), 503: ("not ready", "Readiness")}),
                }
            },
            "/model": {
                "get": {
                    "summary": "the deployed model: name, version, alias, metrics, threshold, schema",
                    "responses": _responses({200: ("the model", "ModelInfo"), 503: ("no model", "ErrorBody")}),
                }
            },
            "/predict": {
                "post": {
                    "summary": "score one record, a list of records, a dataframe_split, or a CSV",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        _ref("Record"),
                                        {"type": "array", "items": _ref("Record"), "minItems": 1, "maxItems": max_rows},
                                        _ref("DataframeSplit"),
                                    ]
                                }
                            },
                            CSV_TYPE: csv_body,
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "one prediction per record, in order (CSV in, CSV out)",
                            "content": {
                                "application/json": {"schema": _ref("Predictions")},
                                CSV_TYPE: {"schema": {"type": "string"}},
                            },
                        },
                        **_responses(bad_input),
                    },
                }
            },
            "/explain": {
                "post": {
                    "summary": "per-feature log-odds contributions for one record",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Record")}}},
                    "responses": _responses(
                        {
                            200: ("the explanation", "Explanation"),
                            409: ("the model family has no exact explanation here", "ErrorBody"),
                            **bad_input,
                        }
                    ),
                }
            },
            "/reload": {
                "post": {
                    "summary": "graceful reload: new workers load the current payload",
                    "security": [{"reloadToken": []}],
                    "responses": _responses(
                        {
                            202: ("reloading", "Reloading"),
                            401: ("no bearer token sent", "ErrorBody"),
                            403: ("wrong token", "ErrorBody"),
                            503: ("no token configured, or not running under gunicorn", "ErrorBody"),
                        }
                    ),
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "this document",
                    "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
                }
            },
        },
        "components": {
            "securitySchemes": {"reloadToken": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Record": record,
                "DataframeSplit": {
                    "type": "object",
                    "description": "MLflow's columnar batch: feature names once, then a list of cells per record",
                    "required": ["dataframe_split"],
                    "additionalProperties": False,
                    "properties": {
                        "dataframe_split": {
                            "type": "object",
                            "required": ["columns", "data"],
                            "additionalProperties": False,
                            "properties": {
                                "columns": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                                "data": {
                                    "type": "array",
                                    "items": {"type": "array"},
                                    "minItems": 1,
                                    "maxItems": max_rows,
                                },
                            },
                        }
                    },
                },
                "ModelInfo": ServedModel.json_schema(),
                **api_bodies.component_schemas(),
            },
        },
    }


# -- running it -------------------------------------------------------------------------------------
