"""The predictor's server: gunicorn's settings and hooks, and the process that runs it natively.

``gunicorn -c python:mlops.core.serving.gunicorn_conf 'mlops.core.serving.predictor_app:create_app()'`` is the
predictor; the generated payload's ``gunicorn.conf.py`` and the predictor image read the same
:func:`gunicorn_settings`. With ``serving.proxy: nginx`` (the default) gunicorn listens on a private unix socket
and its arbiter starts nginx, the buffering proxy, on ``serving.host:serving.port`` (:mod:`.proxy`): natively,
in compose and in a payload's image the same code runs, only the configuration differs.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

from gunicorn import util as gunicorn_util

from mlops.core import config, services
from mlops.core.config import Settings
from mlops.core.serving import api_bodies, proxy
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
    behind_proxy = proxy.enabled(settings)
    if behind_proxy:
        proxy.require_nginx()  # before anything starts: the message names the fix
        proxy.prepare(settings)  # the private folder gunicorn's socket goes in

    def when_ready(server: Any) -> None:
        if behind_proxy:  # gunicorn's socket is bound: nginx may now listen for it
            proxy.start(settings)

    def on_exit(server: Any) -> None:
        proxy.stop()  # after the workers answered what they were given

    return {
        "bind": proxy.upstream_bind(settings) if behind_proxy else f"{settings.serving.host}:{settings.serving.port}",
        "workers": settings.serving.workers,
        "worker_class": WORKER_CLASSES[settings.serving.worker_class],
        # gunicorn turns sync into gthread when threads > 1: sync means one thread
        "threads": settings.serving.threads if settings.serving.worker_class == "gthread" else 1,
        "keepalive": settings.serving.keepalive_seconds,  # sync ignores it (one request per connection)
        "timeout": proxy.WORKER_TIMEOUT_SECONDS,  # a 100k-row batch takes about a second: catches a stuck worker
        "graceful_timeout": 30,  # in-flight requests get this long to finish on reload or shutdown
        "preload_app": False,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "mlops-predictor",
        "control_socket_disable": True,  # one fixed socket path per user would clash between predictors
        "on_starting": _on_starting,
        "when_ready": when_ready,
        "on_exit": on_exit,
        "post_worker_init": _post_worker_init,
        "worker_exit": _worker_exit,
    }


def _on_starting(server: Any) -> None:
    # Imported in the arbiter (not the model: workers load it), inherited by every forked worker.
    import sklearn.ensemble  # noqa: F401
    import xgboost  # noqa: F401

    # gunicorn answers a request it cannot parse (400, 431 and the like) itself, in HTML: in the API's JSON
    # error body instead. Behind nginx few reach a client (nginx refuses them first), without it every one does.
    gunicorn_util.write_error = write_json_error


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``util.write_error`` (status line, ``Connection: close``), with an :class:`ErrorBody`."""
    message = f"{reason.lower()}: {mesg}" if mesg else reason.lower()
    body = (json.dumps(api_bodies.dump(api_bodies.ErrorBody(error=message))) + "\n").encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)


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
    """gunicorn serving :func:`create_app` on ``serving.host``:``port`` (not started: call ``.start()``), behind
    nginx unless ``serving.proxy`` is none.

    The process reads the same configuration (``MLOPS_CONFIG``/``MLOPS_ROOT`` and ``MLOPS_*`` overrides
    of this environment); ``port`` and ``payload_dir`` override the configured ones.
    """
    if (env or {}).get("MLOPS_SERVING__PROXY", settings.serving.proxy) == "nginx" and proxy.nginx_binary() is None:
        raise services.ServiceError(f"the predictor cannot start: {proxy.MISSING}")
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
