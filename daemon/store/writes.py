"""Who writes to the store next, and whether writing works at all.

SQLite has one writer at a time, and its busy handler is not fair: a thread that writes
log lines batch after batch can take the lock again and again while a lease renewal
sleeps in the handler, until the renewal gives up with "database is locked" and a task
that was doing fine loses its lease (issue 11). So on SQLite every write transaction of
this process passes a `WriteGate`, and background writers (the log writer's batches)
let every other writer (lease renewals, finishing an attempt, claims, starts) that is
writing or waiting to go first. A data directory has one process (its lock file), so the gate sees
every writer but outside tools. On PostgreSQL writers lock rows, not the database, and
no gate is used.

`WriteHealth` remembers whether the last write failed and why (locked by another
program, disk full, read-only), so `/readyz` answers 503 and writes answer 503 with
the reason instead of accepting work that cannot be recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError


class WriteGate:
    """One writer of the process at a time; background writers let every other go first.

    Writers take turns on a mutex rather than at SQLite's lock, whose busy handler sleeps
    between tries. A background writer (the next batch of log lines) starts only when no
    other writer is in a write transaction or waiting for one, so an ordinary writer
    waits at most for the one batch that was already under way.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._ordinary = 0  # ordinary writers in a write transaction or waiting for one
        self._background_waiting = 0
        self._mutex = threading.Lock()
        """One writer of this process at a time: a writer waiting here is handed the turn
        the moment the last one commits, where SQLite's busy handler would sleep 1 to
        100 ms between tries (measured: a third of a sequential flow's time)."""

    @property
    def writers(self) -> int:
        """Ordinary writers in a write transaction or waiting for one."""
        return self._ordinary

    def wait_for_quiet(self) -> None:
        """Return once no ordinary writer is writing or waiting (a background turn); the
        background write itself then goes through `ordinary`, like any other."""
        with self._condition:
            self._background_waiting += 1
            try:
                self._condition.wait_for(lambda: not self._ordinary)
            finally:
                self._background_waiting -= 1

    @contextmanager
    def ordinary(self) -> Iterator[None]:
        with self._condition:
            self._ordinary += 1
        try:
            with self._mutex:
                yield
        finally:
            with self._condition:
                self._ordinary -= 1
                if not self._ordinary and self._background_waiting:
                    self._condition.notify_all()


@dataclass
class WriteFailure:
    reason: str
    since: float


class WriteHealth:
    """Whether writes to the store work; the reason and since when when they do not."""

    def __init__(self) -> None:
        self._failure: WriteFailure | None = None
        self._lock = threading.Lock()

    def failed(self, error: BaseException) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = WriteFailure(reason_of(error), time.time())
            else:
                self._failure.reason = reason_of(error)

    def succeeded(self) -> None:
        if self._failure is not None:
            with self._lock:
                self._failure = None

    @property
    def failure(self) -> WriteFailure | None:
        return self._failure


FULL_WORDS = ("disk is full", "database or disk is full", "no space left")
LOCKED_WORDS = ("database is locked", "database table is locked", "lock timeout")
READ_ONLY_WORDS = ("readonly database", "read-only")


def reason_of(error: BaseException) -> str:
    """What an operator needs to know about a failed write, in a few words."""
    text = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    lowered = text.lower()
    if any(word in lowered for word in FULL_WORDS):
        return f"the store's disk is full ({text})"
    if any(word in lowered for word in LOCKED_WORDS):
        return f"the store is locked by another program ({text})"
    if any(word in lowered for word in READ_ONLY_WORDS):
        return f"the store is read-only ({text})"
    return f"the store cannot be written ({type(error).__name__}: {text})"


def store_unavailable(error: BaseException) -> str | None:
    """The reason, when `error` is the store refusing a write (locked, full, read-only)."""
    if not isinstance(error, OperationalError):
        return None
    return reason_of(error)
