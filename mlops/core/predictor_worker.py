"""The predictor's gunicorn worker: gunicorn's ``gthread`` worker, with keep-alive that does not hold a stop.

A ``gthread`` worker reads each request on a thread of its pool, so a client that sends its body slowly holds
one thread while the others answer (docs/reliability.md, slow clients), and keep-alive lets a client send its
next request on the same connection instead of opening a new one (the serving benchmark's clients do).

gunicorn 26's worker, once told to stop, waits for every open connection before it exits, idle keep-alive
and not-yet-readable ones included, and only wakes up for them after ``graceful_timeout``: every reload and
stop took 30 s, long enough for the process supervisor to SIGKILL it. An idle connection holds no request,
so this worker closes those as soon as it stops, then waits only for requests in flight, as gunicorn's
``sync`` worker does. A client whose request races the close sees the connection closed before any byte of
an answer, which HTTP clients retry on an idempotent or fresh connection.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any

from gunicorn.workers.gthread import ThreadWorker


class PredictorWorker(ThreadWorker):
    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        if not self.alive:  # stopping: the graceful loop calls this until no connection is left
            self._close_idle(self.keepalived_conns)
            self._close_idle(self.pending_conns)
            if self.nr_conns <= 0:
                return
        super().wait_for_and_dispatch_events(timeout)

    def _close_idle(self, connections: deque[Any]) -> None:
        while connections:
            connection = connections.popleft()
            with contextlib.suppress(OSError, KeyError, ValueError):  # already unregistered
                self.poller.unregister(connection.sock)
            self.nr_conns -= 1
            connection.close()
