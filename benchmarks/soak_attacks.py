"""The soak's attack drills (issue #25), each against real processes in the soak's throwaway folder:

- ``slow_clients``: 1,000 connections of each slow kind (one byte, trickled headers, a trickled body) held
  while normal clients POST ``/predict`` (``answered_share`` within 1 s, ``p99_ms``);
- ``master_kill``: the gunicorn master of a predictor supervised as ``python -m mlops up`` supervises it,
  SIGKILLed under load (``recovered_seconds``, ``lost``);
- ``mage_routes``: every route of Mage's table, every method, no login, on a Mage server started as the native
  stack starts it (``routes_checked``, ``open_state_changing``);
- ``reload_storm``: 200 correct-token reloads, 20 at a time, under load (``throughput_share``, ``lost``);
- ``spool_full``: a predictor whose spool disk is full, then whose database is down (``answered``, ``logged``,
  ``lost``, ``refused``, ``recovered_without_restart``);
- ``secrets_in_logs``: every ``*.log`` the drills wrote, searched for every secret they used.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

from mlops.core import config, services
from mlops.core.platform import orchestration, stack
from mlops.core.platform.stack_state import State
from mlops.core.serving import predictor_server
from mlops.testing import fault_drills, mage_routes, slow_client_drill, supervision_drill
from mlops.testing.drills import ThrowawayPostgres

SLOW_CONNECTIONS = 1000


def slow_clients(url: str, record: dict[str, Any]) -> dict[str, Any]:
    return slow_client_drill.slow_clients(url, SLOW_CONNECTIONS, normal_requests=300, record=record)


def master_kill(
    folder: Path, settings: config.Settings, env: dict[str, str], payload: Path, records: list[dict[str, Any]]
) -> dict[str, Any]:
    run = folder / "supervised"
    port = services.free_port()
    state = supervision_drill.supervised_predictor(settings, run, env, port, payload)
    try:
        return supervision_drill.master_kill(run, f"http://127.0.0.1:{port}", settings.monitoring_db, records)
    finally:
        stack.stop(State.load(run) or state, run)


def mage_route_check(folder: Path, pg: ThrowawayPostgres) -> tuple[dict[str, Any], dict[str, str]]:
    """Mage's whole route table without a login; also the secrets this Mage was given (for the log search)."""
    used = {
        "MLOPS_SECRETS__RETRAIN_TOKEN": secrets.token_hex(16),
        "MLOPS_SECRETS__MAGE_OWNER_PASSWORD": secrets.token_hex(16),
    }
    overrides = {
        **used,
        "MLOPS_ORCHESTRATION__MAGE_URL": f"http://127.0.0.1:{services.free_port()}",
        "MLOPS_PATHS__WORK_DIR": str(folder / "mage_work"),
        "MLOPS_STORES__MONITORING_DB": pg.database("soak_mage_monitoring"),
        "MAGE_DATA_DIR": str(folder / "mage_data"),
    }
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)  # the bootstrap and the server read them, as under `up`
    settings = config.load(environ=dict(os.environ))
    database = pg.database("soak_mage")
    proc = orchestration.mage_server(settings, database, folder / "mage.log", 2)
    try:
        orchestration.bootstrap(settings, database)
        proc.start()
        services.wait_http(f"{settings.orchestration.mage_url}/api/status", proc, timeout=300)
        outcome = mage_routes.check_routes(settings.orchestration.mage_url)
    finally:
        proc.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    keys = ("routes_checked", "calls", "open", "open_state_changing", "cors_star")
    return {k: outcome[k] for k in keys}, used


def reload_storm(url: str, token: str, arbiter_pid: int, records: list[dict[str, Any]]) -> dict[str, Any]:
    """200 correct-token reloads, 20 at a time, while clients score."""
    return fault_drills.reload_storm(url, token, arbiter_pid, records, calls=200, concurrency=20, seconds=8.0)


def spool_full(
    folder: Path,
    settings: config.Settings,
    env: dict[str, str],
    payload: Path,
    pg: ThrowawayPostgres,
    records: list[dict[str, Any]],
) -> dict[str, Any]:
    """A predictor whose spool is a 1 MiB tmpfs (mounting needs root), its disk filled, then its database
    stopped; what was answered, logged, lost and refused, and whether it recovered without a restart."""
    spool = folder / "tiny-spool"
    spool.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(spool)], check=True)
    port = services.free_port()
    proc = predictor_server.predictor_process(
        settings,
        port=port,
        payload_dir=payload,
        log_path=folder / "spool-full-predictor.log",
        env=env | {"MLOPS_SERVING__SPOOL_DIR": str(spool)},
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        services.wait_http(f"{url}/ready", proc, timeout=240)
        outcome = fault_drills.spool_full(url, spool, settings.monitoring_db, pg, records, seconds=6.0)
    finally:
        if not services.postgres_reachable(pg.server_url):
            pg.start()
        proc.stop()
        subprocess.run(["umount", "-l", str(spool)], check=False)
    keys = (
        "answered",
        "logged",
        "lost",
        "refused",
        "clear_refusals",
        "recovered_without_restart",
        "ready_again_seconds",
        "after_recovery",
        "left_behind",
    )
    return {k: outcome[k] for k in keys}
