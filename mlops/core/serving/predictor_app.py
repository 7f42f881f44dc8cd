"""The predictor: a Flask app (run by gunicorn) scoring requests with the deployed champion.

Each gunicorn worker builds the app with :func:`create_app`, which loads the payload that deploy wrote
(``serving.payload_dir``: ``model.json`` + the MLflow model directory ``model-<version>/``). Without a
``model.json`` the app still starts: ``/health`` answers, ``/ready`` says why it is not ready, and a
reload picks the model up (loading it is :mod:`mlops.core.serving.model_loading`). Requests are validated against
the model's feature schema
(:mod:`mlops.core.serving.request_validation`), scored by the compiled scorer (:mod:`mlops.core.serving.scoring`), and
every scored record goes to the prediction log (:mod:`mlops.core.serving.prediction_log`) off the request path.
``POST /reload`` asks gunicorn's arbiter for a graceful reload (SIGHUP): new workers load the payload as it
is now, old ones finish their requests first. Its OpenAPI document is :mod:`mlops.core.serving.openapi`; gunicorn's
settings, hooks and the process that runs it all are :mod:`mlops.core.serving.predictor_server`.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, Response, g, request
from pydantic_core import to_json
from werkzeug.exceptions import HTTPException

from mlops.core import config
from mlops.core.config import Settings
from mlops.core.serving import api_bodies, openapi
from mlops.core.serving.explanations import ExplanationUnavailable, explain
from mlops.core.serving.model_card import ServedModel
from mlops.core.serving.model_loading import DeployedModel, PayloadError, load_model, load_yielding, read_card
from mlops.core.serving.prediction_log import PredictionLog, ScoredBatch
from mlops.core.serving.prediction_spool import JournalUnavailable
from mlops.core.serving.reload_state import RELOAD_STATE, ReloadState, state_path
from mlops.core.serving.request_errors import RequestError
from mlops.core.serving.scoring import decisions

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


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(to_json(body), status=status, mimetype="application/json", headers=headers)


def _error(status: int, message: str) -> Response:
    return _json(api_bodies.dump(api_bodies.ErrorBody(error=message)), status)


def create_app(settings: Settings | None = None, payload_dir: Path | None = None) -> Flask:
    """The predictor app for the payload in ``payload_dir`` (default: ``settings.serving.payload_dir``)."""
    settings = settings or config.load()
    payload = payload_dir or settings.resolve(settings.serving.payload_dir)
    app = Flask("mlops.predictor")
    app.config["MAX_CONTENT_LENGTH"] = settings.serving.max_body_bytes
    model: DeployedModel | None = None
    not_ready = ""
    reloads = ReloadState(state_path(settings.work_dir, settings.serving.port))
    try:  # under gunicorn the parent is the arbiter: is this worker booting for a reload, old ones serving?
        reloading = reloads.in_flight(reloads.current(), os.getppid())
        model = load_yielding(payload, settings) if reloading else load_model(payload, settings)
    except PayloadError as exc:
        not_ready = str(exc)
        log.warning("predictor not ready: %s", not_ready)
    prediction_log = PredictionLog(
        settings.monitoring_db,
        settings.spool_dir,
        settings.serving.log_batch_size,
        settings.serving.log_flush_seconds,
    ).start()
    app.extensions["prediction_log"] = prediction_log
    app.extensions["model"] = model
    app.extensions[RELOAD_STATE] = reloads
    try:  # a reload ends once its new workers get here
        reloads.worker_booted(os.getppid(), os.getpid())
    except OSError as exc:
        log.warning("the reload state %s cannot be updated: %s", reloads.path, exc)

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
            try:
                segment = prediction_log.journal(scored)
            except JournalUnavailable as exc:  # not on disk: not answered (an answer is always logged)
                return _error(503, f"refused, nothing was answered or logged: {exc}")
            response.call_on_close(lambda: prediction_log.submit(scored, segment))
        return response

    @app.get("/health")
    def health() -> Response:
        return _json(api_bodies.dump(api_bodies.Status()))

    @app.get("/ready")
    def ready() -> Response:
        if model is None:
            return _json(api_bodies.dump(api_bodies.Readiness(ready=False, reason=not_ready)), 503)
        problem = prediction_log.problem()  # e.g. the spool disk is full: requests would be refused
        if problem:
            return _json(api_bodies.dump(api_bodies.Readiness(ready=False, reason=problem)), 503)
        ready = api_bodies.Readiness(ready=True, model_name=model.name, model_version=model.version)
        return _json(api_bodies.dump(ready))

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
        answer = api_bodies.predictions_body(
            request_id=g.request_id,
            model_name=deployed.name,
            model_version=deployed.version,
            threshold=deployed.threshold,
            probabilities=probabilities.tolist(),
            decisions=decided.tolist(),
        )
        return _json(answer)

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
            api_bodies.dump(
                api_bodies.Explanation(
                    request_id=g.request_id,
                    model_version=deployed.version,
                    probability=explanation.probability,
                    decision=decided,
                    base_value=explanation.base_value,
                    contributions=explanation.contributions,
                )
            )
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
        # Coalesced: one reload in flight across the workers; the others are told so at once.
        state = reloads.current()
        started = False
        if not reloads.in_flight(state, int(arbiter)):  # checked again under the lock by begin()
            try:
                upcoming: str | None = read_card(payload).version
            except PayloadError:
                upcoming = None
            started, state = reloads.begin(int(arbiter), settings.serving.workers, upcoming)
        if not started:
            assert state is not None
            since = max(time.time() - float(state["started"]), 0.0)
            running = api_bodies.Reloading(
                payload_version=state.get("version"),
                already_in_progress=True,
                detail=f"a reload started {since:.1f} s ago is still in progress (loading version "
                f"{state.get('version')}); this request started none",
            )
            return _json(api_bodies.dump(running), 202)
        try:
            os.kill(int(arbiter), signal.SIGHUP)  # graceful: new workers load the payload, old ones finish
        except OSError:
            reloads.cancel(int(arbiter))
            raise
        body = api_bodies.Reloading(payload_version=upcoming, detail="reload started: new workers load the payload")
        return _json(api_bodies.dump(body), 202)

    @app.get("/openapi.json")
    def openapi_json() -> Response:
        if model is None:
            return _json(openapi.document(None, None, settings))
        return _json(openapi.document(model.validator.record_json_schema(), model.version, settings))

    return app
