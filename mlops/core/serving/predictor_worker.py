"""The predictor's gunicorn worker: gunicorn's ``gthread`` worker, with keep-alive that does not hold a stop.

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
"""

from __future__ import annotations

import time

from gunicorn.workers.gthread import ThreadWorker

STOP_GRACE_SECONDS = 1.0
STOP_POLL_SECONDS = 0.2  # while stopping, wake up this often to close connections whose grace ran out


class PredictorWorker(ThreadWorker):
    _grace_given = False

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        if not self.alive:  # stopping: the graceful loop calls this until no connection is left
            if not self._grace_given:
                self._grace_given = True
                deadline = time.monotonic() + STOP_GRACE_SECONDS
                # min() keeps each queue ordered by deadline, which murder_keepalived/murder_pending rely on
                for connection in (*self.keepalived_conns, *self.pending_conns):
                    connection.timeout = min(connection.timeout, deadline)
            timeout = min(timeout, STOP_POLL_SECONDS)
        super().wait_for_and_dispatch_events(timeout)
