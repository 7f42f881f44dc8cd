"""The predictor: a Flask app (run by gunicorn) scoring requests with the deployed champion.

Each gunicorn worker builds the app with :func:`create_app`, which loads the payload that deploy wrote
(``serving.payload_dir``: ``model.json`` + the MLflow model directory ``model-<version>/``). Without a
``model.json`` the app still starts: ``/health`` answers, ``/ready`` says why it is not ready, and a
reload picks the model up. Requests are validated against the model's feature schema
(:mod:`mlops.core.request_validation`), scored by the compiled scorer (:mod:`mlops.core.scoring`), and
every scored record goes to the prediction log (:mod:`mlops.core.prediction_log`) off the request path.
``POST /reload`` asks gunicorn's arbiter for a graceful reload (SIGHUP): new workers load the payload as it
is now, old ones finish their requests first. :func:`predictor_process` starts it all natively.
"""

from __future__ import annotations

import csv
import gc
import hmac
import io
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
from flask import Flask, Response, g, request
from pydantic_core import to_json
from threadpoolctl import threadpool_limits
from werkzeug.exceptions import HTTPException

from mlops.core import config, services
from mlops.core.config import Settings
from mlops.core.model_card import ModelCard, ModelCardError, ServedModel
from mlops.core.prediction_log import PredictionLog, ScoredBatch, close_all
from mlops.core.request_validation import RecordValidator, RequestError
from mlops.core.schema import FeatureSchema
from mlops.core.scoring import ExplanationUnavailable, Scorer, decisions, explain, probe_records, scorer_for

log = logging.getLogger(__name__)
ARBITER_PID = "GUNICORN_ARBITER_PID"  # app.config key, set by the gunicorn config's post_worker_init
JSON_TYPES = ("application/json",)
CSV_TYPE = "text/csv"
# A text cell a spreadsheet would run as a formula (OWASP's CSV injection list): echoed with a leading quote.
FORMULA_STARTS = frozenset("=+-@\t\r")


BIG_BODY_BYTES = 1_000_000  # parsing more than this pauses the garbage collector (see collection_paused)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time a step of the request: it is reported in the answer's Server-Timing header."""
    started = time.perf_counter()
    try:
        yield
    finally:
        g.setdefault("phases", []).append((name, (time.perf_counter() - started) * 1000))


@contextmanager
def collection_paused(pause: bool) -> Iterator[None]:
    """Scoring a big batch allocates millions of objects and no reference cycles: without a pause the
    cyclic garbage collector would run hundreds of times over them (doubling the parse time). Reference
    counting still frees them when the request ends."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class PayloadError(RuntimeError):
    """The payload holds no usable model; the message is the /ready reason."""


@dataclass
class DeployedModel:
    card: ModelCard  # model.json
    schema: FeatureSchema
    scorer: Scorer
    validator: RecordValidator
    threshold: float
    name: str = field(init=False)
    version: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.card.name
        self.version = self.card.version


def open_categories(settings: Settings) -> set[str]:
    """Category columns whose unseen values are expected: the split column (training saw only some of its
    values by construction, e.g. months; the monitoring batches bring the others)."""
    split = settings.dataset.split
    if split.strategy == "column" and split.column in settings.dataset.categorical:
        return {split.column}
    return set()


def read_card(payload_dir: Path) -> ModelCard:
    try:
        card = ModelCard.read(payload_dir)
    except ModelCardError as exc:
        raise PayloadError(str(exc)) from exc
    if card is None:
        raise PayloadError("no champion deployed yet")
    return card


def load_model(payload_dir: Path, settings: Settings) -> DeployedModel:
    """Load the payload's model and build its scorer and request validator (raises :class:`PayloadError`)."""
    card = read_card(payload_dir)
    model_dir = payload_dir / card.model_dir
    try:
        pipeline = mlflow.sklearn.load_model(str(model_dir))
        schema = card.input_schema
    except Exception as exc:
        raise PayloadError(f"the model in {model_dir} could not be loaded: {exc}") from exc
    # Workers already use every core: threads per request only add overhead (and OpenMP threads spin
    # against the other workers). One thread each; the results are unchanged.
    threadpool_limits(limits=1)
    estimator = pipeline.steps[-1][1]
    if "n_jobs" in estimator.get_params():
        estimator.set_params(n_jobs=1)
    probe_columns: dict[str, list[Any]] = {}
    for name, num in schema.numerical.items():
        probe_columns[name] = [num.minimum, num.maximum, num.median] + ([None] if num.nullable else [])
    for name, cat in schema.categorical.items():
        probe_columns[name] = [*cat.categories, None, "__unseen__"]
    scorer = scorer_for(pipeline, settings.dataset, probe_records(probe_columns, rows=256))
    validator = RecordValidator(
        schema, settings.serving.max_batch_rows, open_categories(settings), settings.serving.max_text_length
    )
    return DeployedModel(card, schema, scorer, validator, card.threshold)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(to_json(body), status=status, mimetype="application/json", headers=headers)


def _error(status: int, message: str, errors: list[dict[str, Any]] | None = None) -> Response:
    return _json({"error": message, "errors": errors or []}, status)


def create_app(settings: Settings | None = None, payload_dir: Path | None = None) -> Flask:
    """The predictor app for the payload in ``payload_dir`` (default: ``settings.serving.payload_dir``)."""
    settings = settings or config.load()
    payload = payload_dir or settings.resolve(settings.serving.payload_dir)
    app = Flask("mlops.predictor")
    app.config["MAX_CONTENT_LENGTH"] = settings.serving.max_body_bytes
    model: DeployedModel | None = None
    not_ready = ""
    try:
        model = load_model(payload, settings)
    except PayloadError as exc:
        not_ready = str(exc)
        log.warning("predictor not ready: %s", not_ready)
    prediction_log = PredictionLog(
        settings.monitoring_db,
        settings.resolve(settings.serving.spool_dir),
        settings.serving.log_batch_size,
        settings.serving.log_flush_seconds,
    ).start()
    app.extensions["prediction_log"] = prediction_log
    app.extensions["model"] = model

    @app.before_request
    def _start_clock() -> None:
        g.started = time.perf_counter()
        g.request_id = uuid.uuid4().hex

    @app.after_request
    def _timing(response: Response) -> Response:
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        phases = "".join(f", {name};dur={ms:.3f}" for name, ms in g.get("phases", []))
        response.headers["Server-Timing"] = f"app;dur={elapsed_ms:.3f}{phases}"
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response

    @app.errorhandler(RequestError)
    def _bad_request(exc: RequestError) -> Response:
        return _json(exc.body(), exc.status)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        response = _error(exc.code or 500, exc.description or exc.name)
        if exc.code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    def _server_fault(exc: Exception) -> Response:
        # Bad input is answered before scoring; reaching this is a fault of ours, logged in full.
        log.exception("request %s failed", g.get("request_id"))
        return _error(500, f"internal error (request {g.get('request_id')}); see the predictor's log")

    def require_model() -> DeployedModel:
        if model is None:
            raise RequestError(503, f"not ready: {not_ready}")
        return model

    def body_bytes() -> bytes:
        return request.get_data(cache=False)  # raises 413 above MAX_CONTENT_LENGTH

    def content_kind(allowed: tuple[str, ...]) -> str:
        mimetype = request.mimetype or ""
        if mimetype in JSON_TYPES or (mimetype.startswith("application/") and mimetype.endswith("+json")):
            kind = "json"
        elif mimetype == CSV_TYPE:
            kind = "csv"
        else:
            kind = ""
        if kind not in allowed:
            wanted = " or ".join({"json": "application/json", "csv": CSV_TYPE}[k] for k in allowed)
            raise RequestError(415, f"Content-Type {mimetype or '(none)'!r} is not supported; send {wanted}")
        return kind

    def score(deployed: DeployedModel, records: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        probabilities = deployed.scorer.predict(records)
        decided = decisions(probabilities, deployed.threshold)
        g.scored = ScoredBatch(
            g.request_id,
            datetime.now(UTC),
            deployed.name,
            deployed.version,
            records,
            probabilities.tolist(),
            decided.tolist(),
        )
        return probabilities, decided

    @app.after_request
    def _log_after_sending(response: Response) -> Response:
        scored = g.pop("scored", None)
        if scored is not None:
            # On disk before the answer leaves (a crash after it loses nothing); queued for the database
            # once the answer is sent, so the writer thread never competes with the request for the GIL.
            segment = prediction_log.journal(scored)
            response.call_on_close(lambda: prediction_log.submit(scored, segment))
        return response

    @app.get("/health")
    def health() -> Response:
        return _json({"status": "ok"})

    @app.get("/ready")
    def ready() -> Response:
        if model is None:
            return _json({"ready": False, "reason": not_ready}, 503)
        return _json({"ready": True, "model_name": model.name, "model_version": model.version})

    @app.get("/model")
    def model_info() -> Response:
        deployed = require_model()
        trees = getattr(deployed.scorer, "trees", None) is not None  # few records walk compiled trees
        served = ServedModel.of(deployed.card, deployed.scorer.kind, trees)
        return _json(served.model_dump(mode="json", by_alias=True))

    @app.post("/predict")
    def predict() -> Response:
        kind = content_kind(("json", "csv"))
        deployed = require_model()
        with phase("read"):
            body = body_bytes()
        with collection_paused(len(body) > BIG_BODY_BYTES):
            return predict_csv(deployed, body) if kind == "csv" else predict_json(deployed, body)

    def predict_csv(deployed: DeployedModel, body: bytes) -> Response:
        with phase("parse"):
            parsed = deployed.validator.parse_csv(body)
        with phase("score"):
            probabilities, decided = score(deployed, parsed.records)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*parsed.header, "probability", "decision"])
        text_columns = [i for i, name in enumerate(parsed.header) if name in deployed.validator.schema.categorical]
        for row, p, d in zip(parsed.rows, probabilities.tolist(), decided.tolist(), strict=True):
            for i in text_columns:
                if row[i][:1] in FORMULA_STARTS:
                    row[i] = "'" + row[i]
            writer.writerow([*row, repr(p), "true" if d else "false"])
        return Response(out.getvalue(), mimetype=CSV_TYPE)

    def predict_json(deployed: DeployedModel, body: bytes) -> Response:
        with phase("parse"):
            records = deployed.validator.parse_json(body)
        with phase("score"):
            probabilities, decided = score(deployed, records)
        predictions = [
            {"probability": p, "decision": d} for p, d in zip(probabilities.tolist(), decided.tolist(), strict=True)
        ]
        return _json(
            {
                "request_id": g.request_id,
                "model_name": deployed.name,
                "model_version": deployed.version,
                "threshold": deployed.threshold,
                "predictions": predictions,
            }
        )

    @app.post("/explain")
    def explain_record() -> Response:
        content_kind(("json",))
        deployed = require_model()
        (record,) = deployed.validator.parse_json(body_bytes(), single_only=True)
        try:
            explanation = explain(deployed.scorer, record)
        except ExplanationUnavailable as exc:
            raise RequestError(409, str(exc)) from None
        decided = bool(decisions(np.array([explanation.probability]), deployed.threshold)[0])
        score(deployed, [record])
        return _json(
            {
                "request_id": g.request_id,
                "model_version": deployed.version,
                "probability": explanation.probability,
                "decision": decided,
                "base_value": explanation.base_value,
                "contributions": explanation.contributions,
                "units": "log-odds",
            }
        )

    @app.post("/reload")
    def reload() -> Response:
        token = settings.secrets.reload_token
        if not token:
            raise RequestError(503, "reload is disabled: no token is configured (set MLOPS_SECRETS__RELOAD_TOKEN)")
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():  # the scheme is case-insensitive (RFC 9110)
            response = _error(401, "send the reload token as 'Authorization: Bearer <token>'")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        if not hmac.compare_digest(credentials.strip().encode(), token.encode()):
            raise RequestError(403, "the reload token is wrong")
        arbiter = app.config.get(ARBITER_PID)
        if not arbiter:
            raise RequestError(503, "reload needs the gunicorn server (this app is not running under it)")
        try:
            upcoming: str | None = read_card(payload).version
        except PayloadError:
            upcoming = None
        os.kill(int(arbiter), signal.SIGHUP)  # graceful: new workers load the payload, old ones finish
        return _json({"status": "reloading", "payload_version": upcoming}, 202)

    @app.get("/openapi.json")
    def openapi() -> Response:
        return _json(openapi_document(model, settings))

    return app


# -- OpenAPI ----------------------------------------------------------------------------------------


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


def openapi_document(model: DeployedModel | None, settings: Settings) -> dict[str, Any]:
    """OpenAPI 3.1 of the predictor; the record schema is the one requests are validated against."""
    record: dict[str, Any] = (
        model.validator.record_json_schema()
        if model is not None
        else {"type": "object", "description": "no model deployed yet: every request answers 503"}
    )
    max_rows = settings.serving.max_batch_rows
    error = {
        "type": "object",
        "required": ["error", "errors"],
        "properties": {
            "error": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "reason"],
                    "properties": {
                        "field": {"type": "string"},
                        "reason": {"type": "string"},
                        "record": {"type": "integer", "minimum": 0},
                    },
                },
            },
            "error_count": {"type": "integer"},
        },
    }
    prediction = {
        "type": "object",
        "required": ["probability", "decision"],
        "properties": {"probability": {"type": "number"}, "decision": {"type": "boolean"}},
    }
    bad_input = {
        400: ("malformed JSON or CSV", "Error"),
        413: (f"body over {settings.serving.max_body_bytes} bytes or over {max_rows} records", "Error"),
        415: ("unsupported Content-Type", "Error"),
        422: ("the records do not match the feature schema; every bad field is named", "Error"),
        503: ("no model deployed yet", "Error"),
    }
    csv_body = {
        "schema": {"type": "string"},
        "example": ",".join(settings.dataset.features) + "\n",
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{settings.project} predictor",
            "version": model.version if model else "none",
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
                    "responses": _responses({200: ("the model", "ModelInfo"), 503: ("no model", "Error")}),
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
                            409: ("the model family has no exact explanation here", "Error"),
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
                            401: ("no bearer token sent", "Error"),
                            403: ("wrong token", "Error"),
                            503: ("no token configured, or not running under gunicorn", "Error"),
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
                "Error": error,
                "Status": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
                "Readiness": {
                    "type": "object",
                    "required": ["ready"],
                    "properties": {
                        "ready": {"type": "boolean"},
                        "reason": {"type": "string"},
                        "model_name": {"type": "string"},
                        "model_version": {"type": "string"},
                    },
                },
                "ModelInfo": ServedModel.json_schema(),
                "Predictions": {
                    "type": "object",
                    "required": ["request_id", "model_name", "model_version", "threshold", "predictions"],
                    "properties": {
                        "request_id": {"type": "string"},
                        "model_name": {"type": "string"},
                        "model_version": {"type": "string"},
                        "threshold": {"type": "number"},
                        "predictions": {"type": "array", "items": prediction},
                    },
                },
                "Explanation": {
                    "type": "object",
                    "required": [
                        "request_id",
                        "model_version",
                        "probability",
                        "decision",
                        "base_value",
                        "contributions",
                    ],
                    "properties": {
                        "request_id": {"type": "string"},
                        "model_version": {"type": "string"},
                        "probability": {"type": "number"},
                        "decision": {"type": "boolean"},
                        "base_value": {"type": "number"},
                        "contributions": {"type": "object", "additionalProperties": {"type": "number"}},
                        "units": {"const": "log-odds"},
                    },
                },
                "Reloading": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"const": "reloading"}, "payload_version": {"type": ["string", "null"]}},
                },
            },
        },
    }


# -- running it -------------------------------------------------------------------------------------


# gthread is gunicorn's, giving idle keep-alive connections 1 s once it stops instead of graceful_timeout (see
# predictor_worker)
WORKER_CLASSES = {"gthread": "mlops.core.predictor_worker.PredictorWorker", "sync": "sync"}


def gunicorn_settings(settings: Settings | None = None) -> dict[str, Any]:
    """gunicorn's settings and hooks (``globals().update(gunicorn_settings())`` in a config file).

    The app is not preloaded: every worker builds it, so a graceful reload (SIGHUP from ``POST /reload``)
    starts workers that load the payload as it is now, while the old ones finish their requests. The
    arbiter imports the heavy libraries once (``on_starting``) so forked workers boot in a fraction of a
    second and a reload makes requests wait briefly instead of failing.
    """
    settings = settings or config.load()
    return {
        "bind": f"{settings.serving.host}:{settings.serving.port}",
        "workers": settings.serving.workers,
        "worker_class": WORKER_CLASSES[settings.serving.worker_class],
        # gunicorn turns sync into gthread when threads > 1: sync means one thread
        "threads": settings.serving.threads if settings.serving.worker_class == "gthread" else 1,
        "keepalive": settings.serving.keepalive_seconds,  # sync ignores it (one request per connection)
        "timeout": 120,  # a 100k-row batch takes about a second; this only catches a stuck worker
        "graceful_timeout": 30,  # in-flight requests get this long to finish on reload or shutdown
        "preload_app": False,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "mlops-predictor",
        "control_socket_disable": True,  # one fixed socket path per user would clash between predictors
        "on_starting": _on_starting,
        "post_worker_init": _post_worker_init,
        "worker_exit": _worker_exit,
    }


def _on_starting(server: Any) -> None:
    # Imported in the arbiter (not the model: workers load it), inherited by every forked worker.
    import sklearn.ensemble  # noqa: F401
    import xgboost  # noqa: F401


def _post_worker_init(worker: Any) -> None:
    worker.wsgi.config[ARBITER_PID] = worker.ppid  # /reload signals this process
    # The libraries and the model are loaded and never freed: keep the garbage collector off them, so a
    # collection triggered by a request scans only that request's objects.
    gc.freeze()


def _worker_exit(server: Any, worker: Any) -> None:
    close_all()  # write or spool every logged prediction before the worker goes


def predictor_process(
    settings: Settings,
    port: int | None = None,
    payload_dir: Path | None = None,
    log_path: Path | None = None,
    env: dict[str, str] | None = None,
) -> services.ManagedProcess:
    """gunicorn serving :func:`create_app` on ``serving.host``:``port`` (not started: call ``.start()``).

    The process reads the same configuration (``MLOPS_CONFIG``/``MLOPS_ROOT`` and ``MLOPS_*`` overrides
    of this environment); ``port`` and ``payload_dir`` override the configured ones.
    """
    overrides: dict[str, str] = {"MLOPS_ROOT": str(settings.root)}
    if settings.source_file is not None:
        overrides["MLOPS_CONFIG"] = str(settings.source_file)
    if port is not None:
        overrides["MLOPS_SERVING__PORT"] = str(port)
    if payload_dir is not None:
        overrides["MLOPS_SERVING__PAYLOAD_DIR"] = str(payload_dir)
    command = [
        str(services.VENV_BIN / "gunicorn"),
        "--config",
        "python:mlops.core.gunicorn_conf",
        "mlops.core.serving:create_app()",
    ]
    log_file = log_path or settings.work_dir / "logs" / "predictor.log"
    return services.ManagedProcess("predictor", command, log_file, env={**overrides, **(env or {})}, cwd=settings.root)
