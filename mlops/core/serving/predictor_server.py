"""The predictor's server: gunicorn's settings and hooks, and the process that runs it natively.

``gunicorn -c python:mlops.core.serving.gunicorn_conf 'mlops.core.serving.predictor_app:create_app()'`` is the
predictor; the generated payload's ``gunicorn.conf.py`` reads the same :func:`gunicorn_settings`.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from mlops.core import config, services
from mlops.core.config import Settings
from mlops.core.serving.prediction_log import close_all
from mlops.core.serving.predictor_app import ARBITER_PID

# gthread is gunicorn's, giving idle keep-alive connections 1 s once it stops instead of graceful_timeout (see
# predictor_worker)
WORKER_CLASSES = {"gthread": "mlops.core.serving.predictor_worker.PredictorWorker", "sync": "sync"}


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
        "python:mlops.core.serving.gunicorn_conf",
        "mlops.core.serving.predictor_app:create_app()",
    ]
    log_file = log_path or settings.work_dir / "logs" / "predictor.log"
    return services.ManagedProcess("predictor", command, log_file, env={**overrides, **(env or {})}, cwd=settings.root)
