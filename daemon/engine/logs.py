"""Log lines of task runs: masked, bounded, and written to the store in batches.

Writing a row per line would cost a transaction per line; lines are buffered and
written by a background thread every `FLUSH_SECONDS`, or at once when a batch is full.
`flush()` writes what is pending before an attempt's result is recorded, so a task's
logs are in the store before its state says it ended.

A task that prints without end must not take the daemon or its store with it
(issue 11: a task printing 1 GB took the daemon to 3.8 GB of memory and failed tasks
around it). So:

- each attempt of a task run may store at most `LogLimits.max_lines` lines and
  `max_bytes` bytes of text; past that one line says the log was truncated, the rest
  is counted, and when the attempt ends a last line says how much was not stored;
- the lines waiting to be written are bounded (`MAX_PENDING_BYTES`): a task that prints
  faster than the store writes waits in `write` (its pipe fills and the command blocks)
  instead of growing the daemon's memory;
- each batch is its own short transaction, and the background writer starts one only
  when no other write is under way or waiting, so a lease renewal or a finished attempt
  never waits behind more than one batch (`store.writes.WriteGate`);
- once an attempt is closed (ended, or its lease lost), nothing more is written for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from headwater.daemon import defaults
from headwater.daemon.engine.secrets import Masker
from headwater.daemon.store.store import Row, Store

FLUSH_SECONDS = 0.2  # lines wait at most this long before they are written
FLUSH_LINES = 500  # rows in one batch (one transaction)
FLUSH_BYTES = 1024 * 1024  # text in one batch: a batch holds the write lock briefly
MAX_PENDING_BYTES = 8 * 1024 * 1024  # beyond this, writers wait for the store
MAX_LINE_CHARS = 64 * 1024  # a longer line is cut; the rest is noted, not stored
RETRY_MAX_SECONDS = 5.0  # a failing store is tried again at most this far apart
ROW_OVERHEAD_BYTES = 64  # what a row costs beyond its text, for the pending bound

log = logging.getLogger(__name__)
LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")
Key = tuple[str, int]
"""(task run id, attempt)."""


def normal_level(level: str) -> str:
    level = level.upper()
    return "WARN" if level == "WARNING" else level if level in LEVELS else "INFO"


@dataclass(frozen=True)
class LogLimits:
    max_lines: int = defaults.LOG_MAX_LINES
    max_bytes: int = defaults.LOG_MAX_BYTES


@dataclass
class _Budget:
    """What one attempt has stored and dropped so far."""

    execution_id: str
    cancel: threading.Event | None
    lines: int = 0
    bytes: int = 0
    dropped_lines: int = 0
    dropped_bytes: int = 0
    closed: bool = False


@dataclass
class _Pending:
    rows: list[Row] = field(default_factory=list)
    bytes: int = 0


class LogWriter:
    def __init__(
        self,
        store: Store,
        masker: Masker,
        clock: Callable[[], float] = time.time,
        limits: LogLimits | None = None,
    ) -> None:
        self.store = store
        self.masker = masker
        self.clock = clock
        self.limits = limits or LogLimits()
        self._pending = _Pending()
        self._budgets: dict[Key, _Budget] = {}
        self._room = threading.Condition()  # guards _pending and _budgets
        self._flushing = threading.Lock()
        self._wake = threading.Event()  # there is something to write
        self._full = threading.Event()  # ... and it should be written now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- attempts --------------------------------------------------------------------------
    def open(self, execution_id: str, key: Key, cancel: threading.Event | None = None) -> None:
        """Start counting an attempt's lines; a writer waiting for room gives up on `cancel`."""
        with self._room:
            self._budgets[key] = _Budget(execution_id, cancel)

    def close(self, key: Key) -> None:
        """The attempt ended (or is no longer ours): nothing more is stored for it.

        When lines were dropped, a last line says how many.
        """
        with self._room:
            budget = self._budgets.pop(key, None)
            if budget is None or budget.closed:
                return
            budget.closed = True
            self._room.notify_all()
        if budget.dropped_lines:
            mib = budget.dropped_bytes / (1024 * 1024)
            self._enqueue(
                self._row(
                    budget.execution_id,
                    key,
                    "WARN",
                    f"log truncated: {budget.dropped_lines} more lines ({mib:.1f} MiB) "
                    "were printed and not stored",
                )
            )

    # -- lines -----------------------------------------------------------------------------
    def write(
        self, execution_id: str, task_run_id: str | None, attempt: int, level: str, message: str
    ) -> None:
        if len(message) > MAX_LINE_CHARS:
            message = (
                message[:MAX_LINE_CHARS] + f" … [{len(message) - MAX_LINE_CHARS} characters cut]"
            )
        key = (task_run_id, attempt) if task_run_id is not None else None
        size = len(message.encode("utf-8", "replace"))
        if key is not None and not self._admit(key, size):
            return
        row = self._row(execution_id, key, normal_level(level), self.masker.mask(message))
        self._enqueue(row, self._budgets.get(key) if key is not None else None)

    def _admit(self, key: Key, size: int) -> bool:
        """Count a line against its attempt's budget; False when it is not to be stored."""
        with self._room:
            budget = self._budgets.get(key)
            if budget is None:
                return True  # an attempt this writer was not told of (local runs, tests)
            if budget.closed:
                return False
            if budget.dropped_lines or (
                budget.lines + 1 > self.limits.max_lines
                or budget.bytes + size > self.limits.max_bytes
            ):
                first = not budget.dropped_lines
                budget.dropped_lines += 1
                budget.dropped_bytes += size
                if not first:
                    return False
            else:
                budget.lines += 1
                budget.bytes += size
                return True
        self._enqueue(self._row(budget.execution_id, key, "WARN", self._truncated_notice()))
        return False

    def _truncated_notice(self) -> str:
        mib = self.limits.max_bytes / (1024 * 1024)
        return (
            f"log truncated: this attempt reached the limit of {self.limits.max_lines} lines "
            f"or {mib:.0f} MiB of log; further lines are counted, not stored"
        )

    def _row(self, execution_id: str, key: Key | None, level: str, message: str) -> Row:
        return {
            "execution_id": execution_id,
            "task_run_id": key[0] if key else None,
            "attempt": key[1] if key else 0,
            "timestamp": self.clock(),
            "level": level,
            "message": message,
        }

    def _enqueue(self, row: Row, budget: _Budget | None = None) -> None:
        """Queue a row; wait while too much is pending (unless the attempt is stopped)."""
        size = len(row["message"]) + ROW_OVERHEAD_BYTES
        with self._room:
            while self._pending.bytes + size > MAX_PENDING_BYTES and self._pending.rows:
                if self._stop.is_set() or (budget is not None and _stopped(budget)):
                    break
                self._full.set()
                self._room.wait(FLUSH_SECONDS)
            first = not self._pending.rows
            self._pending.rows.append(row)
            self._pending.bytes += size
            full = len(self._pending.rows) >= FLUSH_LINES
        if full:
            self._full.set()
        if first or full:
            self._wake.set()

    # -- writing ---------------------------------------------------------------------------
    def flush(self, background: bool = False) -> None:
        """Write every pending line now, batch by batch; raises when the store fails.

        In the `background`, each batch waits for a moment when no other write is under
        way or waiting (`Store.wait_for_quiet`); a task's end flushes its lines at once.
        """
        while self._pending.rows:
            if background:
                self.store.wait_for_quiet()
            with self._flushing:
                batch = self._take_batch()
                if not batch:
                    return
                try:
                    self.store.append_logs(batch)
                except Exception:
                    self._put_back(batch)
                    raise
            with self._room:
                self._room.notify_all()

    @contextmanager
    def draining(self) -> Iterator[list[Row]]:
        """The pending lines, for the caller to write in its own transaction (a task's
        last lines with its result: one commit, not two). More than a batch is written
        first, batch by batch; what the block leaves unwritten (it raised) is kept."""
        while self._pending.bytes > FLUSH_BYTES:
            self.flush()
        with self._flushing:  # keeps the background writer from writing later lines first
            with self._room:
                rows, self._pending = self._pending.rows, _Pending()
            try:
                yield rows
            except BaseException:
                self._put_back(rows)
                raise
        with self._room:
            self._room.notify_all()

    def _take_batch(self) -> list[Row]:
        with self._room:
            rows, taken, size = self._pending.rows, 0, 0
            while taken < len(rows) and taken < FLUSH_LINES and size < FLUSH_BYTES:
                size += len(rows[taken]["message"]) + ROW_OVERHEAD_BYTES
                taken += 1
            batch = rows[:taken]
            del rows[:taken]
            self._pending.bytes -= size
            return batch

    def _put_back(self, batch: list[Row]) -> None:
        with self._room:  # kept, first in line, for the next flush
            self._pending.rows[:0] = batch
            self._pending.bytes += sum(len(r["message"]) + ROW_OVERHEAD_BYTES for r in batch)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="log-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._full.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.wait()  # a first line, or stop: an idle writer does not poll
            self._wake.clear()
            if failures:  # the store refused the last batch: wait, however full
                self._stop.wait(_backoff(failures))
            else:  # let lines gather into one batch, unless a batch is full already
                self._full.wait(FLUSH_SECONDS)
            self._full.clear()
            try:
                self.flush(background=True)
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("writing log lines failed (%s); they are kept and retried", exc)
                self._wake.set()
                continue
            if failures:
                log.info("writing log lines works again")
            failures = 0
            if self._pending.rows:
                self._wake.set()


def _stopped(budget: _Budget) -> bool:
    return budget.closed or (budget.cancel is not None and budget.cancel.is_set())


def _backoff(failures: int) -> float:
    return float(min(FLUSH_SECONDS * 2**failures, RETRY_MAX_SECONDS))
