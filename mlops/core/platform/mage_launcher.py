"""``python -m mlops.core.platform.mage_launcher start mlops ...``: Mage's own CLI, its process queue's races closed.

Mage 0.9.80's scheduler hands each block run to a ``ProcessQueue``; on a loaded machine (two shared cores, a
container) two races in it left a run hanging for ever, seen in the compose stack test:

1. ``enqueue`` puts the job on the queue *before* marking it queued in the shared job dict, so a worker that
   takes it at once dies with ``KeyError: 'block_run_N'``;
2. ``multiprocessing.Queue.put`` returns before the item reaches the pipe (a feeder thread writes it later), so
   the worker pool that ``enqueue`` starts right after can find the queue empty, exit, and leave the job queued
   with no pool: ``has_job`` then reports it as present on every scheduler tick and it is never run.

The patch marks the job before putting it, uses a ``multiprocessing.SimpleQueue`` (its ``put`` writes to the
pipe before it returns; no feeder thread), and restarts a pool that exited while jobs wait.

A third race, seen in the retrain end-to-end test, is in how a run gets its block runs: ``PipelineRun.create``
commits the run, *then* creates its block runs, while the scheduler, in another process, starts every initial
run and creates the block runs of one that has none. A run created by a block (retrain starting deploy) that
the scheduler sees in between gets two sets; the first completes, the second waits for ever, and so does the
run. :func:`patch_block_run_creation` makes creating them idempotent under a lock on the run's row. Nothing
else of Mage changes.

Both the compose image's entrypoint and :func:`mlops.core.platform.orchestration.mage_server` start Mage
through this module, and ``python -m mlops run`` runs pipelines headless through it (``... mage_launcher run
mlops <pipeline>``), where it also keeps Mage's start-up chatter out of the pipeline's output. A server it
starts is locked down as far as Mage allows (:func:`lock_down_server`).
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from typing import Any


def patch_process_queue() -> None:
    from mage_ai.orchestration.queue import process_queue as pq

    queue_class: Any = pq.ProcessQueue
    if getattr(queue_class, "_mlops_patched", False):
        return
    original_init = queue_class.__init__
    original_has_job = queue_class.has_job

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.queue = multiprocessing.SimpleQueue()  # put() returns once the job is in the pipe

    def enqueue(self: Any, job_id: str, target: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if self.status != pq.QueueStatus.ACTIVE:
            self._print("Cannot enqueue a job to an inactive queue.")
            return
        if self.has_job(job_id):
            self._print(f"Job {job_id} exists. Skip enqueue.")
            return
        self._print(f"Enqueue job {job_id}")
        if self.redis_client:
            self.redis_client.set(job_id, self.client_id)
            self.redis_client.set(self.client_id, "1", ex=pq.LIVENESS_TIMEOUT_SECONDS)
        self.job_dict[job_id] = pq.JobStatus.QUEUED  # before any worker can take it
        self.queue.put([job_id, target, args, kwargs])
        if not self.is_worker_pool_alive():
            self.start_worker_pool()

    def has_job(self: Any, job_id: str, logger: Any = None, logging_tags: Any = None) -> bool:
        if not self.is_worker_pool_alive() and not self.queue.empty():
            self.start_worker_pool()  # a pool that exited just as a job arrived
        return bool(original_has_job(self, job_id, logger=logger, logging_tags=logging_tags))

    queue_class.__init__ = __init__
    queue_class.enqueue = enqueue
    queue_class.has_job = has_job
    queue_class._mlops_patched = True


def patch_block_run_creation() -> None:
    """``PipelineRun.create_block_runs`` creates them only if the run has none, checked while holding a lock on
    the run's row (``SELECT ... FOR UPDATE``; Mage commits each block run, which releases it): whichever of the
    run's creator and the scheduler comes second finds the first one's block runs and creates none."""
    from mage_ai.orchestration.db import db_connection
    from mage_ai.orchestration.db.models.schedules import BlockRun, PipelineRun

    run_class: Any = PipelineRun
    if getattr(run_class, "_mlops_patched", False):
        return
    original_create_block_runs = run_class.create_block_runs

    def create_block_runs(self: Any) -> list[Any]:
        db_connection.start_session()  # a no-op where the process has one
        session = db_connection.session
        session.query(PipelineRun.id).filter(PipelineRun.id == self.id).with_for_update().one()
        existing = BlockRun.query.filter(BlockRun.pipeline_run_id == self.id).all()
        if existing:
            session.commit()  # ends the transaction: the lock is released
            return list(existing)
        return list(original_create_block_runs(self))

    run_class.create_block_runs = create_block_runs
    run_class._mlops_patched = True


def quiet_mage() -> None:
    """Before Mage is imported, keep out of a headless run's output the start-up lines a user cannot act on:
    jupyter's "Message signing is disabled" warnings (Mage's kernel manager, unused headless), its executor's
    INFO line (Mage's own ``SERVER_VERBOSITY``), and the "DBT library not installed." that Mage prints when
    importing its optional dbt blocks (this project has none)."""
    os.environ.setdefault("SERVER_VERBOSITY", "warning")
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        import mage_ai.data_preparation.models.block.block_factory  # noqa: F401


def _record_oversized_trigger_body(handler: Any, size: int) -> None:
    """The gate refused a body over ``orchestration.max_webhook_bytes`` sent with an API trigger's right token:
    for the retrain trigger, recorded by its size as ``retrain.receive`` records one (nothing else is kept)."""
    from mlops.core import config
    from mlops.core.lifecycle import retrain

    settings = config.load()
    if str(handler.path_kwargs.get("pipeline_schedule_id")) != str(settings.orchestration.retrain_schedule_id):
        return
    try:
        retrain.reject_oversized(settings, size)
    except Exception as exc:  # the monitoring database down: the 413 still stands
        logging.getLogger(__name__).warning("an oversized retrain body (%s bytes) was not recorded: %s", size, exc)


def lock_down_server() -> None:
    """What Mage's settings cannot close (docs/reliability.md, "Mage"), patched before the server starts:

    - every route goes through one gate (:mod:`mlops.core.platform.mage_gate`): a logged-in user or the route's
      own check (an API trigger's token, Mage's API's OAuth) before any handler runs, no
      ``Access-Control-Allow-*`` headers, bodies bounded before they are read by Mage, its web terminal and
      ``/api/runs`` closed, every token in a route's path redacted from the logs;
    - a wrong API-trigger token answered HTTP 200 with ``code: 500``, a traceback and the URL (the token): it
      answers 401 with one line;
    - API trigger tokens are not shown by Mage's API or UI (Mage's ``HIDE_API_TRIGGER_TOKEN``; the answer to
      creating a trigger, or to rotating its token, still carries the new token once), nor written to
      ``triggers.yaml``.

    Notebook and file editing is off unless ``DISABLE_NOTEBOOK_EDIT_ACCESS`` says otherwise (Mage's own
    setting; triggers and Run@once still work).
    """
    os.environ.setdefault("DISABLE_NOTEBOOK_EDIT_ACCESS", "1")
    os.environ.setdefault("DISABLE_TERMINAL", "1")
    os.environ.setdefault("HIDE_API_TRIGGER_TOKEN", "1")
    from mage_ai.server.api import triggers
    from mage_ai.server.api.errors import UnauthenticatedRequestException

    from mlops.core import config
    from mlops.core.platform import mage_gate

    mage_gate.install(config.load().orchestration.max_webhook_bytes, _record_oversized_trigger_body)
    mage_gate.hide_trigger_tokens()
    trigger_write_error = triggers.ApiTriggerPipelineHandler.write_error

    def write_error(self: Any, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if not isinstance(error, UnauthenticatedRequestException):
            trigger_write_error(self, status_code, **kwargs)
            return
        self.set_status(401)
        self.finish({"error": {"code": 401, "message": "wrong or missing token for this API trigger"}})

    triggers.ApiTriggerPipelineHandler.write_error = write_error


# Sent to a Mage process (and inherited by every process Mage forks: scheduler, worker pool, block runs), it
# writes the stack of each of the process's threads to the log: where a run that does not finish waits.
STACKS_SIGNAL = signal.SIGUSR1


def dump_stacks(launcher_pid: int) -> int:
    """Ask the launcher started as ``launcher_pid`` and every process it forked to write their stacks to its
    log; returns how many were asked. Processes it *executed* (Jupyter's kernel) keep their own command line
    and have no handler, so they are left alone (the signal would end them)."""
    import psutil

    try:
        launcher = psutil.Process(launcher_pid)
        command, family = launcher.cmdline(), [launcher, *launcher.children(recursive=True)]
    except psutil.Error:
        return 0
    asked = 0
    for process in family:
        with contextlib.suppress(psutil.Error):
            if process.cmdline() == command:
                process.send_signal(STACKS_SIGNAL)
                asked += 1
    return asked


def main() -> None:
    faulthandler.register(STACKS_SIGNAL, all_threads=True)  # to stderr: the log the launcher writes to
    if sys.argv[1:2] == ["run"]:
        quiet_mage()
    if sys.argv[1:2] == ["start"]:
        lock_down_server()
    patch_process_queue()
    patch_block_run_creation()
    from mage_ai.cli.main import app

    sys.argv[0] = "mage"
    app()


if __name__ == "__main__":
    main()
