"""The master-kill drill as the soak runs it, without the whole stack: a predictor started and supervised as
`python -m mlops up` supervises it (mlops.testing.supervision_drill.supervised_predictor), its gunicorn master
SIGKILLed under a light load: it answers again, and every answered prediction is in the log exactly once."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from mlops.core import config, services
from mlops.core.platform import stack
from mlops.core.platform.stack_state import State
from mlops.testing import supervision_drill

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_a_supervised_predictor_survives_its_master_killed_under_load(
    small_payload: Path,
    throwaway_postgres,  # type: ignore[no-untyped-def]
    sample_records: list[dict[str, Any]],
    settings: config.Settings,
    tmp_path: Path,
) -> None:
    database = throwaway_postgres.database("master_kill")
    env = {
        "MLOPS_STORES__MONITORING_DB": database,
        "MLOPS_SERVING__SPOOL_DIR": str(tmp_path / "spool"),
        "MLOPS_SECRETS__RELOAD_TOKEN": "reload-token-for-this-test",
    }
    port = services.free_port()
    run = tmp_path / "run"
    state = supervision_drill.supervised_predictor(settings, run, env, port, small_payload)
    try:
        result = supervision_drill.master_kill(run, f"http://127.0.0.1:{port}", database, sample_records)
    finally:
        stack.stop(State.load(run) or state, run)
    print(f"master_kill (supervised predictor alone): {result}", file=sys.stderr)
    assert result["recovered_seconds"] is not None and result["restarts"] == 1
    assert result["answered"] > 0 and result["lost"] == 0 and result["duplicated"] == 0
    assert not services.port_in_use(port)
