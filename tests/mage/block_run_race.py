"""``python -m tests.mage.block_run_race patched|unpatched RUNS``: for each of RUNS new runs of the deploy
pipeline, two threads (each its own database session, as the run's creator and Mage's scheduler have) call
``create_block_runs`` at the same moment; prints the number of block runs each run ended with, as JSON.

Needs ``MAGE_DATABASE_CONNECTION_URL`` (a migrated Mage database) and ``MAGE_REPO_PATH``."""

from __future__ import annotations

import json
import sys
import threading
from datetime import datetime, timedelta


def main(mode: str, runs: int) -> list[int]:
    from mage_ai.orchestration.db import db_connection
    from mage_ai.orchestration.db.models.schedules import BlockRun, PipelineRun, PipelineSchedule

    from mlops.core.platform import mage_launcher

    if mode == "patched":
        mage_launcher.patch_block_run_creation()
    db_connection.start_session()
    schedule = PipelineSchedule.create(name="block run race", pipeline_uuid="deploy", schedule_type="api")
    start = datetime.utcnow()
    run_ids = [
        PipelineRun.create(
            create_block_runs=False,
            pipeline_uuid="deploy",
            pipeline_schedule_id=schedule.id,
            execution_date=start + timedelta(seconds=i),
            variables={},
        ).id
        for i in range(runs)
    ]
    for run_id in run_ids:
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def create(
            run_id: int = run_id, barrier: threading.Barrier = barrier, errors: list[BaseException] = errors
        ) -> None:
            try:
                db_connection.start_session()
                run = PipelineRun.query.get(run_id)
                barrier.wait()
                run.create_block_runs()
                db_connection.session.remove()
            except BaseException as error:  # reported by the main thread
                errors.append(error)

        threads = [threading.Thread(target=create) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
    db_connection.session.expire_all()
    return [BlockRun.query.filter(BlockRun.pipeline_run_id == run_id).count() for run_id in run_ids]


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
