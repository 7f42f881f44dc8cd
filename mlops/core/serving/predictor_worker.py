"""The predictor's gunicorn worker: gunicorn's ``gthread`` worker, with keep-alive that does not hold a stop,
old workers that serve until a reload's new ones are ready, and an orphan that exits at once.

A ``gthread`` worker reads each request on a thread of its pool, so a client that sends its body slowly holds
one thread while the others answer (docs/reliability.md, slow clients), and keep-alive lets a client send its
next request on the same connection instead of opening a new one (the serving benchmark's clients do).

gunicorn 26's worker, once told to stop (a reload or a shutdown), waits for every open connection before it
exits, idle keep-alive and not-yet-readable ones included, and only wakes up for them after
``graceful_timeout``: every reload and stop took 30 s, long enough for the supervisor to SIGKILL it. This
worker gives those connections ``STOP_GRACE_SECONDS`` instead: a client that sends its next request in that
time is answered (with ``Connection: close``, so it reconnects to a new worker), and a connection still idle
after it is closed. Closing them at once instead made a client whose request crossed the close see a
dropped connection (1 in 14,780 requests during the compose stack test's reload).

On a reload gunicorn's arbiter forks the new workers and tells the old ones to stop at once, before the new
ones have loaded the model: nothing accepted connections for a second or more per reload. An old worker
told to stop while its arbiter's reload is in flight (:mod:`mlops.core.serving.reload_state`) keeps serving
until the new workers are ready (at most ``DEFER_STOP_SECONDS``), then stops as above.

A worker whose master died (SIGKILL, OOM) is an orphan: nothing would ever stop it, and gunicorn's own
check left it serving idle keep-alive connections for ``graceful_timeout``. This one notices within a second
(``os.getppid()`` changes), closes its listening sockets (the port is free for the next predictor), finishes
the requests in flight, flushes the prediction log (at most ``ORPHAN_FLUSH_SECONDS``: what is not written by
then stays in its journal, which the next predictor replays) and exits.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from mlops.core.serving.prediction_log import close_all
from mlops.core.serving.reload_state import RELOAD_STATE

STOP_GRACE_SECONDS = 1.0
STOP_POLL_SECONDS = 0.2  # while stopping, wake up this often to close connections whose grace ran out
DEFER_STOP_SECONDS = 20.0  # an old worker serves at most this long while a reload's new workers boot
ORPHAN_FLUSH_SECONDS = 5.0

log = logging.getLogger(__name__)


class PredictorWorker(ThreadWorker):
    _grace_given = False
    _stop_requested: float | None = None
    _orphaned = False

    def _reload_state(self) -> Any:
        return getattr(getattr(self, "wsgi", None), "extensions", {}).get(RELOAD_STATE)

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: stop, unless a reload is in flight and this is an old worker (then stop once it is done)."""
        state = self._reload_state()
        if self.alive and state is not None and self._stop_requested is None and self.ppid == os.getppid():
            try:
                waiting = state.waiting_for_new_workers(self.ppid, os.getpid())
            except Exception:
                waiting = False
            if waiting:
                self._stop_requested = time.monotonic()
                return
        super().handle_exit(sig, frame)

    def _deferred_stop_due(self) -> bool:
        if self._stop_requested is None or not self.alive:
            return False
        if time.monotonic() - self._stop_requested >= DEFER_STOP_SECONDS or self.ppid != os.getppid():
            return True
        try:
            return not self._reload_state().waiting_for_new_workers(self.ppid, os.getpid())
        except Exception:
            return True

    def is_parent_alive(self) -> bool:
        if os.getppid() == self.ppid:
            return True
        if not self._orphaned:
            self._orphaned = True
            self.log.warning("the gunicorn master (pid %s) is gone: this worker stops serving and exits", self.ppid)
            self.alive = False  # the stop grace below applies to idle connections
            self.set_accept_enabled(False)
            for listener in self.sockets:  # the port is free for the next predictor at once
                listener.close()
        return False

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        if self._stop_requested is not None and self.alive:
            if self._deferred_stop_due():
                self.alive = False
            else:
                timeout = min(timeout, STOP_POLL_SECONDS)
        if self.alive and os.getppid() != self.ppid:
            self.is_parent_alive()
        if not self.alive:  # stopping: the graceful loop calls this until no connection is left
            if not self._grace_given:
                self._grace_given = True
                deadline = time.monotonic() + STOP_GRACE_SECONDS
                # min() keeps each queue ordered by deadline, which murder_keepalived/murder_pending rely on
                for connection in (*self.keepalived_conns, *self.pending_conns):
                    connection.timeout = min(connection.timeout, deadline)
            timeout = min(timeout, STOP_POLL_SECONDS)
        super().wait_for_and_dispatch_events(timeout)

    def run(self) -> None:
        super().run()
        if self._orphaned:  # no master to wait for us: flush what we can, the journal keeps the rest
            close_all(ORPHAN_FLUSH_SECONDS)
