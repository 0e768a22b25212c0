"""Log lines of task runs, masked and written to the store in batches.

Writing a row per line would cost a transaction per line; lines are buffered and
flushed by a background thread every `FLUSH_SECONDS` or every `FLUSH_LINES` lines, and
`flush()` writes what is pending before an attempt's result is recorded, so a task's
logs are in the store before its state says it ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from headwater.daemon.engine.secrets import Masker
from headwater.daemon.store.store import Row, Store

FLUSH_SECONDS = 0.2
FLUSH_LINES = 500
MAX_LINE_CHARS = 64 * 1024  # a longer line is cut; the rest is noted, not stored

log = logging.getLogger(__name__)
LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")


def normal_level(level: str) -> str:
    level = level.upper()
    return "WARN" if level == "WARNING" else level if level in LEVELS else "INFO"


class LogWriter:
    def __init__(
        self, store: Store, masker: Masker, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.masker = masker
        self.clock = clock
        self._pending: list[Row] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listeners: list[Callable[[Row], None]] = []
        """Called with each line as it is written (live progress in the terminal)."""

    def write(
        self, execution_id: str, task_run_id: str | None, attempt: int, level: str, message: str
    ) -> None:
        if len(message) > MAX_LINE_CHARS:
            message = (
                message[:MAX_LINE_CHARS] + f" … [{len(message) - MAX_LINE_CHARS} characters cut]"
            )
        row = {
            "execution_id": execution_id,
            "task_run_id": task_run_id,
            "attempt": attempt,
            "timestamp": self.clock(),
            "level": normal_level(level),
            "message": self.masker.mask(message),
        }
        for listener in self.listeners:
            listener(row)
        with self._lock:
            self._pending.append(row)
            full = len(self._pending) >= FLUSH_LINES
        if full:
            self._wake.set()

    def flush(self) -> None:
        with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                self.store.append_logs(batch)
            except Exception:
                with self._lock:  # keep them for the next flush
                    self._pending[:0] = batch
                raise

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="log-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("writing log lines failed; will retry")
