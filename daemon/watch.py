"""Watching a local repository for pushes: a ref that moves is a hint to sync.

Per DESIGN's trap: watch `refs/heads/` recursively and the repository root (not
recursively) for `packed-refs` and `HEAD`; never `objects/`, which would flood
inotify. Events are hints: they are debounced, then the sync reads the ref itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

DEBOUNCE_SECONDS = 0.05


class _Hint(FileSystemEventHandler):
    def __init__(self, notify: Callable[[], None], root_files: tuple[str, ...] = ()) -> None:
        self.notify = notify
        self.root_files = root_files
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory and event.event_type == "modified":
            return
        path = str(event.src_path)
        if self.root_files and not path.endswith(self.root_files):
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
    observer.schedule(_Hint(notify), str(heads), recursive=True)
    observer.schedule(_Hint(notify, ("packed-refs", "HEAD")), str(directory), recursive=False)
    observer.daemon = True
    observer.start()
    return observer
