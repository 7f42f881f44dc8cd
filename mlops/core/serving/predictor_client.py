"""HTTP client of the predictor API (mlops/core/serving/predictor_app.py), with errors a person can act on.

- :class:`PredictorUnavailable`: nothing answers at the URL, or it answers but has no model (``/ready`` 503).
- :class:`InvalidInput`: the predictor rejected the records (HTTP 422); ``errors`` lists each field and reason.
- :class:`PredictorError`: any other refusal (400, 413, 415, ...), with the status and the predictor's message.

Answers are the API's own bodies (:mod:`mlops.core.serving.api_bodies`), validated as they arrive.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import requests

from mlops.core.serving.api_bodies import ErrorBody, Explanation, FieldError, Predictions
from mlops.core.serving.model_card import ServedModel

PREDICTOR = "predictor"


class PredictorError(RuntimeError):
    """The predictor refused a request; ``status`` is its HTTP status (0 when it never answered)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class PredictorUnavailable(PredictorError):
    """The predictor does not answer, or answers without a model to serve."""

    service = PREDICTOR

    def __init__(self, url: str, detail: str, status: int = 0) -> None:
        super().__init__(f"the predictor at {url} is unavailable: {detail}", status)
        self.where = url
        self.detail = detail


class InvalidInput(PredictorError):
    """HTTP 422: the records break the model's feature schema."""

    def __init__(self, errors: list[FieldError], message: str = "invalid input", total: int | None = None) -> None:
        shown = "; ".join(f"{e.field}: {e.reason}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{message}: {shown}{more}", 422)
        self.errors = errors
        self.total = total or len(errors)  # the predictor lists at most 100 errors per answer


class PredictorClient:
    """One predictor base URL; every call has a timeout and raises the errors above."""

    def __init__(self, url: str, timeout: float = 10.0, session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()

    def _request(self, method: str, path: str, timeout: float | None = None, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, f"{self.url}{path}", timeout=timeout or self.timeout, **kwargs)
        except requests.Timeout as exc:
            raise PredictorUnavailable(self.url, f"no answer within {timeout or self.timeout:.0f} s") from exc
        except requests.RequestException as exc:
            raise PredictorUnavailable(self.url, f"no answer ({exc.__class__.__name__})") from exc
        if response.status_code < 400:
            return response
        body = _json_or_none(response)
        if response.status_code == 422 and isinstance(body, dict) and isinstance(body.get("errors"), list):
            refusal = ErrorBody.model_validate(body)
            raise InvalidInput(list(refusal.errors), refusal.error or "invalid input", refusal.error_count)
        if response.status_code == 503:
            reason = body.get("reason") if isinstance(body, dict) else None
            raise PredictorUnavailable(self.url, str(reason or "not ready (HTTP 503)"), 503)
        message = _message(body) or response.text[:300] or response.reason
        raise PredictorError(
            f"the predictor refused {method} {path} (HTTP {response.status_code}): {message}", response.status_code
        )

    def health(self) -> bool:
        return self._request("GET", "/health", timeout=3).status_code == 200

    def ready(self) -> tuple[bool, str | None]:
        """(ready, reason): ``/ready`` 503 is an answer here, not an error."""
        try:
            self._request("GET", "/ready", timeout=3)
        except PredictorUnavailable as exc:
            if exc.status == 503:
                return False, exc.detail
            raise
        return True, None

    def model(self) -> ServedModel:
        """What GET /model says the predictor serves (its card; ``input_schema`` is the typed schema)."""
        return ServedModel.model_validate(self._request("GET", "/model").json())

    def reload(self, token: str) -> None:
        """Ask for a graceful reload of the payload (POST /reload with the bearer token)."""
        self._request("POST", "/reload", headers={"Authorization": f"Bearer {token}"})

    def predict(self, records: list[dict[str, Any]]) -> Predictions:
        return Predictions.model_validate(self._request("POST", "/predict", json=records).json())

    def explain(self, record: dict[str, Any]) -> Explanation:
        return Explanation.model_validate(self._request("POST", "/explain", json=record).json())

    def score_csv(self, csv: bytes, timeout: float = 120.0) -> bytes:
        """Score a CSV file; the answer is the same CSV with ``probability`` and ``decision`` appended."""
        headers = {"Content-Type": "text/csv"}
        return self._request("POST", "/predict", timeout=timeout, data=csv, headers=headers).content


@dataclass(frozen=True)
class InvalidRow:
    line: int  # line of the uploaded file (the header is line 1)
    field: str
    reason: str


@dataclass(frozen=True)
class BatchResult:
    scored_csv: bytes  # the valid rows as sent, with ``probability`` and ``decision`` appended ("" if none)
    scored_rows: int
    invalid: list[InvalidRow]  # every problem of every rejected row
    rejected_rows: int


MAX_ROUNDS = 20  # each round drops the rows the predictor named (it names at most 100 problems per answer)


def score_batch(client: PredictorClient, csv_bytes: bytes) -> BatchResult:
    """Score an uploaded CSV: rows the predictor rejects are set aside with their reasons, the rest scored.

    Problems of the file as a whole (header, encoding) raise :class:`InvalidInput` / :class:`PredictorError`.
    """
    try:
        text = csv_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PredictorError(f"the file is not UTF-8 text: {exc}", 400) from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise InvalidInput([FieldError(field="(header)", reason="the file is empty")], "the CSV has no header row")
    rows: list[tuple[int, list[str]]] = [(reader.line_num, row) for row in reader if row]  # as the predictor skips
    invalid: list[InvalidRow] = []
    for _ in range(MAX_ROUNDS):
        if not rows:
            return BatchResult(b"", 0, invalid, len({i.line for i in invalid}))
        try:
            scored = client.score_csv(_csv_bytes(header, [row for _, row in rows]))
        except InvalidInput as exc:
            by_record = [e for e in exc.errors if e.record is not None]
            if not by_record:  # the file as a whole is wrong: nothing to set aside
                raise
            rejected = {e.record for e in by_record}
            invalid += [InvalidRow(rows[e.record][0], e.field, e.reason) for e in by_record if e.record is not None]
            rows = [r for i, r in enumerate(rows) if i not in rejected]
            continue
        return BatchResult(scored, len(rows), invalid, len({i.line for i in invalid}))
    raise PredictorError(
        f"more than {len({i.line for i in invalid})} invalid rows after {MAX_ROUNDS} rounds: fix the listed ones first",
        422,
    )


def _csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message(body: Any) -> str | None:
    if isinstance(body, dict):
        for key in ("error", "message", "reason", "detail"):
            if body.get(key):
                return str(body[key])
    return None
