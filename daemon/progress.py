"""A progress line on standard error while a person waits at a terminal.

The first sync at `headwater up`, `headwater sync`, `headwater backfill` and
`headwater plan --server` wait for work whose length they do not know in advance, so
the line is click's progress bar in its spinner form (a moving mark), with what is
being waited for, a count when one is known, and the seconds waited. It is drawn only
when standard error is a terminal: piped, nothing at all is written (click's own bar
would still print its label once), so scripts see the same bytes as without it.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

TICK_SECONDS = 0.1  # how often the waiting line is redrawn
BAR_WIDTH = 12  # characters of the moving mark's track


class Waiting:
    """`with Waiting("label"):` draws a line that moves until the block ends, then ends
    it with a newline. `done`, if given, ends it earlier (the first sync of `up`, which
    ends while the daemon goes on serving). `step` changes the label, `count` the count;
    `enabled=False` shows nothing."""

    def __init__(
        self,
        label: str,
        done: Callable[[], bool] | None = None,
        stream: TextIO | None = None,
        enabled: bool = True,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.shown = enabled and _is_terminal(self.stream)
        self.lock = threading.Lock()
        """Held while the line is drawn; `clear` takes it too (a log record is written)."""
        self._label = label
        self._count = ""
        self._done = done
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self, label: str) -> None:
        """What is waited for now."""
        self._label, self._count = label, ""

    def count(self, done: int, total: int) -> None:
        """How far a step whose length is known has come."""
        self._count = f"{done}/{total}"

    def clear(self) -> None:
        """Blank the line, so what is written next starts at its beginning (it is drawn
        again on the next tick)."""
        if self.shown and self._thread is not None and self._thread.is_alive():
            with self.lock:
                self.stream.write("\r\x1b[K")
                self.stream.flush()

    def log_filter(self, _record: object) -> bool:
        """For a log handler writing to the same terminal: clears the line first."""
        self.clear()
        return True

    def __enter__(self) -> Waiting:
        if self.shown:
            self._thread = threading.Thread(target=self._draw, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _draw(self) -> None:
        import click

        started = time.monotonic()
        bar = click.progressbar(
            itertools.repeat(""),  # no length: the spinner form
            label=self._label,
            file=self.stream,
            width=BAR_WIDTH,
            item_show_func=lambda info: info,
        )
        with self.lock:
            bar.__enter__()
        finished = False
        while not finished:
            finished = self._stop.wait(TICK_SECONDS) or (self._done is not None and self._done())
            waited = f"{time.monotonic() - started:.0f}s"
            with self.lock:
                bar.label = self._label
                # A full bar on the last line, unless the block ended first (`up` stopped).
                bar.finished = finished and (self._done is None or self._done())
                bar.update(1, " ".join(filter(None, [self._count, waited])))
                bar.render_progress()
                if finished:
                    bar.__exit__(None, None, None)  # the newline


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False
