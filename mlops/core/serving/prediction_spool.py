"""The prediction log's files in the spool folder: the journal, spool files, their claims and recovery.

Before an answer is sent, :meth:`Journal.append` appends its rows to a journal file of this process in the
spool folder (one ``write``, in the kernel's page cache once it returns, so it survives the process being
killed; docs/reliability.md states the promise). The process holds an exclusive ``flock`` on its journal while
it lives; a journal segment is deleted once every batch in it is in the database or the spool. A journal nobody
holds belongs to a dead process: :func:`recover_journals` (run by any predictor process at start and on every
flush) moves it into the spool, whose replay skips rows already stored.

A full disk refuses, it never loses: a journal append that fails (no space, a read-only disk) is cut back to
where it was and raises :class:`JournalUnavailable`, so the request is answered 503 instead of its prediction;
:meth:`Journal.problem` then names the reason until a write succeeds again. Spool files are written to a
temporary name (``.part``), then renamed, so a reader never sees half a file; one that cannot be completed is
deleted (no ``.part`` stays behind; those of dead processes are removed by :func:`remove_stale_parts`). A
spool file being replayed is claimed by renaming it (:func:`claim`); the claims of dead processes are given
back by :func:`release_stale_claims`. The writer thread and the database are :mod:`mlops.core.serving.prediction_log`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
SPOOL_SUFFIX = ".jsonl"
REJECTED_SUFFIX = ".rejected"  # rows the database refused (never retried; see PredictionLog._replay_spool)
CLAIM_MARK = ".claimed-"  # <file>.jsonl.claimed-<pid>: being replayed by that process
JOURNAL_PREFIX = "journal-"  # journal-<pid>-<random>.log: rows answered, not yet in the database or spool
JOURNAL_SEGMENT_BYTES = 8 * 1024 * 1024
PROBE_BYTES = 64 * 1024  # /ready's write test while the journal is failing


class JournalUnavailable(RuntimeError):
    """The journal cannot be written (the message says why): the request must not be answered."""


def json_line(row: dict[str, Any]) -> str:
    return json.dumps({**row, "scored_at": row["scored_at"].isoformat()}) + "\n"


class JournalSegment:
    """One journal file of this process, locked while open; ``outstanding`` batches are not yet written."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / f"{JOURNAL_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}.log"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.closed = False
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.discard()
            raise
        self.opened = time.monotonic()
        self.size = 0
        self.outstanding = 0
        self.sealed = False  # no more batches go in; deleted once outstanding reaches 0

    def append(self, text: str) -> None:
        """All of it or none of it: a write cut short (no space) is truncated back and raises OSError."""
        data = memoryview(text.encode("utf-8"))
        written = 0
        try:
            while written < len(data):  # unbuffered: in the page cache once write(2) returns
                written += os.write(self.fd, data[written:])
        except OSError:
            if written:
                os.ftruncate(self.fd, self.size)  # no half batch a replay would misread
            raise
        self.size += len(data)
        self.outstanding += 1

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        if not self.closed:
            self.closed = True
            os.close(self.fd)  # unbuffered: closing never writes, so it cannot fail on a full disk


class Journal:
    """This process's journal in the spool folder: a segment file at a time, sealed after ``flush_seconds``
    or :data:`JOURNAL_SEGMENT_BYTES`, deleted once every batch in it is settled."""

    def __init__(self, spool_dir: Path, flush_seconds: float) -> None:
        self.spool_dir = spool_dir
        self.flush_seconds = flush_seconds
        self._journal_lock = threading.Lock()
        self._segment: JournalSegment | None = None
        self._journal_problem = ""  # why the last journal write failed ("" once one succeeds)

    def append(self, rows: Iterable[dict[str, Any]]) -> JournalSegment:
        """Write-ahead: the rows on disk before their answer is sent (raises :class:`JournalUnavailable`)."""
        text = "".join(json_line(row) for row in rows)
        with self._journal_lock:
            try:
                segment = self._segment
                if segment is None or segment.sealed:
                    segment = self._segment = JournalSegment(self.spool_dir)
                segment.append(text)
            except OSError as exc:
                self._journal_problem = (
                    f"the prediction log cannot write its journal in {self.spool_dir}: "
                    f"{exc.strerror or exc.__class__.__name__}"
                )
                log.error("prediction log: %s; refusing requests until it can", self._journal_problem)
                raise JournalUnavailable(self._journal_problem) from None
            self._journal_problem = ""
            if segment.size >= JOURNAL_SEGMENT_BYTES or time.monotonic() - segment.opened >= self.flush_seconds:
                segment.sealed = True  # the next batch starts a new file, so this one can be deleted soon
            return segment

    def problem(self) -> str:
        """Why the journal cannot be written now ("" if it can). A failing journal is probed again (a small
        write) so the answer clears by itself."""
        if self._journal_problem:
            probe = self.spool_dir / f".probe-{os.getpid()}-{threading.get_ident()}"
            try:
                fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, b"\0" * PROBE_BYTES)
                finally:
                    os.close(fd)
                self._journal_problem = ""
            except OSError:
                pass
            finally:
                probe.unlink(missing_ok=True)
        return self._journal_problem

    def settle(self, segments: list[JournalSegment]) -> None:
        """These batches are in the database or the spool: delete journal segments nothing waits on."""
        with self._journal_lock:
            for segment in segments:
                segment.outstanding -= 1
            current = self._segment
            if current is not None and current.outstanding == 0:
                current.sealed = True
            for segment in {*segments, *([current] if current else [])}:
                if segment.sealed and segment.outstanding == 0 and not segment.closed:
                    segment.discard()


def recover_journals(spool_dir: Path) -> None:
    """Move the journals of dead processes (nobody holds their lock) into the spool, to be replayed."""
    for path in spool_dir.glob(f"{JOURNAL_PREFIX}*.log"):
        try:
            with path.open("a", encoding="utf-8") as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while its process lives
                if path.stat().st_size:
                    path.replace(spool_dir / f"predictions-recovered-{path.stem}{SPOOL_SUFFIX}")
                    log.warning("prediction log: recovered the journal %s of a process that died", path.name)
                else:
                    path.unlink()
        except (BlockingIOError, FileNotFoundError):
            continue


def spool(spool_dir: Path, rows: list[dict[str, Any]]) -> None:
    """One spool file of ``rows``: written to ``.part``, synced, then renamed (a reader never sees half)."""
    name = f"predictions-{os.getpid()}-{time.time_ns()}-{uuid.uuid4().hex[:8]}{SPOOL_SUFFIX}"
    partial = spool_dir / (name + ".part")
    try:
        with partial.open("w", encoding="utf-8") as fh:
            fh.writelines(json_line(row) for row in rows)
            fh.flush()
            os.fsync(fh.fileno())
        partial.replace(spool_dir / name)
    finally:
        partial.unlink(missing_ok=True)  # a spool file that could not be completed leaves nothing


def remove_stale_parts(spool_dir: Path) -> None:
    """``.part`` files of processes that died while writing them (an unfinished spool file holds rows that
    are still in that process's journal)."""
    for path in spool_dir.glob(f"predictions-*{SPOOL_SUFFIX}.part"):
        try:
            pid = int(path.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not process_alive(pid):
            path.unlink(missing_ok=True)


def waiting_files(spool_dir: Path) -> list[Path]:
    """Spool files to replay, oldest first (claimed ones excluded)."""
    return sorted(spool_dir.glob(f"*{SPOOL_SUFFIX}"))


def claim(path: Path) -> Path | None:
    """Claim a spool file for this process (None if another took it first)."""
    claimed = path.with_name(f"{path.name}{CLAIM_MARK}{os.getpid()}")
    try:
        path.rename(claimed)  # atomic: two workers never replay the same file
    except FileNotFoundError:
        return None
    return claimed


def keep_rejected(rejected: Path, rows: list[dict[str, Any]]) -> None:
    """Rows the database refused, kept on disk beside the spool (never retried)."""
    with rejected.open("a", encoding="utf-8") as fh:
        fh.writelines(json_line(r) for r in rows)


def release_stale_claims(spool_dir: Path) -> None:
    """Give back files claimed by processes that died mid-replay."""
    for path in spool_dir.glob(f"*{SPOOL_SUFFIX}{CLAIM_MARK}*"):
        pid = int(path.name.rsplit(CLAIM_MARK, 1)[1])
        if not process_alive(pid):
            with contextlib.suppress(FileNotFoundError):
                path.rename(path.with_name(path.name.split(CLAIM_MARK, 1)[0]))


def rows_of(path: Path) -> list[dict[str, Any]]:
    """A spool file's rows; a line that is not a whole row (a journal cut by a crash mid-write) is skipped."""
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line:
            continue
        try:
            rows.append(row_from_json(line))
        except (ValueError, KeyError, TypeError):
            log.error("prediction log: skipped a line of %s that is not a whole row", path.name)
    return rows


def row_from_json(line: str) -> dict[str, Any]:
    row = json.loads(line)
    row["scored_at"] = datetime.fromisoformat(row["scored_at"])
    return dict(row)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def spooled_files(spool_dir: Path) -> list[Path]:
    """Spool files waiting for the database (claimed ones included)."""
    return sorted(p for p in spool_dir.glob(f"*{SPOOL_SUFFIX}*") if not p.name.endswith((".part", REJECTED_SUFFIX)))
