"""Watching a local repository for pushes: a ref that moves is a hint to sync.

Per DESIGN's trap: watch `refs/heads/` recursively and the repository root (not
recursively) for `packed-refs` and `HEAD`; never `objects/`, which would flood
inotify. Events are hints: they are debounced, then the sync reads the ref itself.

Only writes are watched. git moves a ref by writing `<ref>.lock` and renaming it over
the ref, so a rename onto a ref (or a ref created, changed or deleted in place) is the
signal. Opens and reads are not: the sync's own `git` commands read these very files,
and a watch that woke on reads would wake itself after every sync it caused, forever
(issue 11: 306 wake-ups in 10 s, a third of a core, on an idle daemon). The filter is
given to the observer, so inotify does not even report the reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

DEBOUNCE_SECONDS = 0.05  # a burst of ref writes (a push of several branches) is one hint
LOCK_SUFFIX = ".lock"  # git's temporary file beside a ref while it is written
WRITE_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    FileClosedEvent,  # closed after writing (a read-only close is another type)
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]
ROOT_FILES = ("packed-refs", "HEAD")  # the refs that live at the repository's root


def is_ref_write(event: FileSystemEvent, root_files: tuple[str, ...] = ()) -> bool:
    """Whether `event` may have moved a ref: a write to a ref file, not to its lock."""
    if event.event_type not in {e.event_type for e in WRITE_EVENTS}:
        return False
    path = str(event.dest_path or event.src_path)
    if path.endswith(LOCK_SUFFIX):
        return False
    return not root_files or Path(path).name in root_files


class _Hint(FileSystemEventHandler):
    def __init__(self, notify: Callable[[], None], root_files: tuple[str, ...] = ()) -> None:
        self.notify = notify
        self.root_files = root_files
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not is_ref_write(event, self.root_files):
            return
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(DEBOUNCE_SECONDS, self.notify)
            self._timer.daemon = True
            self._timer.start()


def git_dir(repository: Path) -> Path:
    """The git directory of a repository path, bare or not."""
    dot_git = repository / ".git"
    return dot_git if dot_git.is_dir() else repository


def watch_refs(repository: Path, notify: Callable[[], None]) -> Any:
    """Start watching; return the observer (call `.stop()` to end)."""
    directory = git_dir(repository)
    observer = Observer()
    heads = directory / "refs" / "heads"
    heads.mkdir(parents=True, exist_ok=True)
    observer.schedule(_Hint(notify), str(heads), recursive=True, event_filter=WRITE_EVENTS)
    observer.schedule(
        _Hint(notify, ROOT_FILES), str(directory), recursive=False, event_filter=WRITE_EVENTS
    )
    observer.daemon = True
    observer.start()
    return observer
