"""The predictor's buffering proxy (nginx, started by gunicorn's arbiter): its configuration comes from the
settings, its own error answers and gunicorn's are the API's JSON error body, and a missing nginx is named
with the fix before anything starts."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
import requests

from mlops.core import config, services
from mlops.core.serving import predictor_server, proxy

from .conftest import Predictor, settings_with

pytestmark = [pytest.mark.postgres, pytest.mark.mlflow]


def test_the_configuration_is_the_template_filled_from_the_settings(settings: config.Settings) -> None:
    ours = settings_with(
        settings, port=18123, max_body_bytes=5000, proxy_client_timeout_seconds=7, proxy_worker_connections=3000
    )
    text = proxy.render(ours)
    assert not re.search(r"@[a-z_]+@", text)  # every placeholder filled
    assert "client_max_body_size 5000;" in text
    for directive in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        assert f"{directive} 7s;" in text
    assert "worker_connections 3000;" in text
    assert f"listen {ours.serving.host}:18123 " in text
    assert f"server unix:{proxy.layout(ours).socket} " in text
    assert predictor_server.gunicorn_settings(ours)["bind"] == f"unix:{proxy.layout(ours).socket}"
    assert proxy.layout(ours).folder == ours.work_dir / "run" / "proxy-18123"


def test_without_the_proxy_gunicorn_listens_itself(settings: config.Settings) -> None:
    ours = settings_with(settings, proxy="none", port=18124)
    assert predictor_server.gunicorn_settings(ours)["bind"] == f"{ours.serving.host}:18124"


def test_a_missing_nginx_is_named_with_the_fix(settings: config.Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy, "nginx_binary", lambda: None)
    with pytest.raises(services.ServiceError, match=r"no nginx is installed.*make nginx.*serving.proxy: none"):
        predictor_server.predictor_process(settings, port=18125)
    with pytest.raises(proxy.ProxyError, match="apt-get install nginx-light"):
        predictor_server.gunicorn_settings(settings)
    predictor_server.predictor_process(settings, port=18125, env={"MLOPS_SERVING__PROXY": "none"})  # no error


@pytest.fixture(scope="module")
def predictor(start_predictor: Callable[..., Predictor], tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    # no model: /health answers, and nothing here needs a prediction
    return start_predictor(
        tmp_path_factory.mktemp("no-payload"), env={"MLOPS_SERVING__MAX_BODY_BYTES": "2048"}, wait_ready=False
    )


def raw(url: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:  # nginx answers a refused request, then may reset what the client still sends
            assert answer, "reset before any answer"
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def assert_json_error(status: int, headers: dict[str, str], body: bytes, expected: int) -> None:
    assert status == expected, body
    assert headers["content-type"].startswith("application/json"), headers
    assert isinstance(json.loads(body)["error"], str) and json.loads(body)["error"]


def test_the_predictor_listens_behind_nginx(predictor: Predictor) -> None:
    answer = predictor.get("/health")
    assert answer.status_code == 200 and answer.headers["Server"] == "nginx"
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["X-Request-ID"])  # the app's headers pass through
    assert "Server-Timing" in answer.headers
    gunicorn = psutil.Process(predictor.process.pid)
    port = int(urlsplit(predictor.url).port or 0)
    listeners = {c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    assert port in listeners
    assert not any(c.status == psutil.CONN_LISTEN for c in gunicorn.connections("tcp"))  # only its unix socket
    nginx = [p for p in gunicorn.children() if p.name() == "nginx"]
    assert len(nginx) == 1 and nginx[0].uids().effective == gunicorn.uids().effective


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 431),
        (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n", 413),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET /.proxy-error/400 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
    ],
    ids=["bad-request", "uri-too-long", "header-too-large", "body-too-large", "transfer-coding", "internal-page"],
)
def test_nginx_answers_its_errors_in_the_api_error_body(
    predictor: Predictor, request_bytes: bytes, expected: int
) -> None:
    assert_json_error(*raw(predictor.url, request_bytes), expected)


def test_gunicorn_answers_what_it_refuses_in_the_api_error_body(predictor: Predictor) -> None:
    """101 header fields pass nginx and are gunicorn's to refuse (431): in JSON, not gunicorn's HTML."""
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(150))
    assert_json_error(*raw(predictor.url, b"GET /health HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"), 431)


def test_a_stopped_gunicorn_leaves_no_nginx(
    start_predictor: Callable[..., Predictor], tmp_path_factory: pytest.TempPathFactory
) -> None:
    own = start_predictor(tmp_path_factory.mktemp("no-payload"), wait_ready=False)
    nginx = [p for p in psutil.Process(own.process.pid).children() if p.name() == "nginx"]
    assert len(nginx) == 1
    own.process.stop()
    nginx[0].wait(timeout=15)  # gunicorn's on_exit stopped it
    with pytest.raises(requests.ConnectionError):
        requests.get(own.url + "/health", timeout=5)


def test_nginx_goes_when_gunicorn_is_killed(
    start_predictor: Callable[..., Predictor], tmp_path_factory: pytest.TempPathFactory
) -> None:
    own = start_predictor(tmp_path_factory.mktemp("no-payload"), wait_ready=False)
    nginx = next(p for p in psutil.Process(own.process.pid).children() if p.name() == "nginx")
    psutil.Process(own.process.pid).kill()  # no on_exit: the parent-death signal stops nginx
    nginx.wait(timeout=15)
    own.process.stop()


def test_the_socket_of_a_deep_work_dir_goes_to_a_short_private_path(settings: config.Settings, tmp_path: Path) -> None:
    deep = settings.model_copy(update={"paths": settings.paths.model_copy(update={"work_dir": tmp_path / ("d" * 120)})})
    where = proxy.layout(deep)
    assert len(str(where.socket)) <= proxy.MAX_SOCKET_PATH
    assert where.folder.is_relative_to(deep.work_dir)


def test_a_taken_port_stops_the_predictor_with_the_reason(settings: config.Settings, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = predictor_server.predictor_process(
            settings,
            port=port,
            payload_dir=tmp_path / "no-payload",
            log_path=tmp_path / "predictor.log",
            env={"MLOPS_SERVING__SPOOL_DIR": str(tmp_path / "spool")},
        ).start()
        try:
            assert proc.process is not None
            assert proc.process.wait(timeout=180) != 0
        finally:
            proc.stop()
    assert "instead of listening on 127.0.0.1" in proc.log_tail(60), proc.log_tail(60)
    assert "is the port taken?" in proc.log_tail(60)
