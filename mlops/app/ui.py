"""What every page shares: the settings, the predictor client, and saying which service is down."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from mlops.core import config
from mlops.core.monitoring import insights
from mlops.core.serving.predictor_client import PredictorClient, PredictorUnavailable

# A page should say "MLflow is down" in seconds, not after MLflow's default of 7 retries with back-off.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

UNAVAILABLE = (PredictorUnavailable, insights.ServiceUnavailable)

# Streamlit's server.maxUploadSize for this app (mlops/app/.streamlit/config.toml, which a test keeps equal)
MAX_UPLOAD_MB = 25


def upload_problem(data: bytes, settings: config.Settings) -> str | None:
    """Why an uploaded CSV is not scored here, judged before it is parsed (parsing costs many times its size),
    or None. Lines are counted as rows: a quoted cell with a line break counts twice, so this errs on the safe
    side."""
    elsewhere = "split it, or score it offline with `python -m mlops score FILE OUT` (any size)"
    if len(data) > MAX_UPLOAD_MB * 1024 * 1024:
        return f"The file is {len(data) / 1024**2:.0f} MB; this page scores at most {MAX_UPLOAD_MB} MB: {elsewhere}."
    rows = data.count(b"\n") + (0 if data.endswith(b"\n") else 1) - 1  # lines less the header
    limit = settings.serving.max_batch_rows
    if rows > limit:
        return f"The file has about {rows:,} rows; the predictor scores at most {limit:,} at once: {elsewhere}."
    return None


def setup(title: str | None = None) -> config.Settings:
    """Page config, title (default: the configuration's ``presentation.title``, else the dataset's name),
    and the settings (a bad configuration stops the page with its message)."""
    try:
        settings = config.load()
    except config.ConfigError as exc:
        st.set_page_config(page_title=f"{title or 'Configuration'} · MLOps", layout="wide")
        st.title(title or "MLOps")
        st.error(f"**The configuration is invalid.** {exc}")
        st.stop()
        raise  # unreachable: st.stop() ends the script run
    title = title or settings.presentation.title or settings.dataset.name
    st.set_page_config(page_title=f"{title} · MLOps", layout="wide")
    st.title(title)
    return settings


def predictor(settings: config.Settings) -> PredictorClient:
    return PredictorClient(settings.serving.url)


NAMES = {"predictor": "The predictor", insights.MLFLOW: "MLflow", insights.DATABASE: "The monitoring database"}


@contextmanager
def section(stop: bool = False, consequence: str | None = None) -> Iterator[None]:
    """Run a part of a page; if a service it needs is down, say which one (an error, no traceback).

    ``stop``: the page cannot go on without it, so it ends there. ``consequence``: the page can go on
    without it; a warning says what is missing instead of an error.
    """
    try:
        yield
    except UNAVAILABLE as exc:
        message = f"**{NAMES.get(exc.service, exc.service)} is down.** {exc}"
        if consequence is not None:
            st.warning(f"{message} {consequence}")
        else:
            st.error(message)
        if stop:
            st.stop()
