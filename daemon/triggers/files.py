"""File triggers: `fs.local.Trigger` polls a directory, `fs.local.RealtimeTrigger` reacts to
file-system events (watchdog).

Exactly once, across restarts. Each file picked up gets a `file_pickups` row whose key is a
hash of the trigger and the file's identity (path, size, mtime in nanoseconds, inode; the
event too for realtime triggers): a file is never picked twice, and a file changed in place
(new size or mtime) counts as a new one. The rows are written first, carrying the id of the
execution they will start; that execution's `trigger_key` names the batch. Then the
execution is created (idempotent by its trigger key), then the action (MOVE, DELETE) is
applied, then the rows are marked done. A process that dies anywhere in between leaves rows
not done, and the next start finishes them: it creates the execution if it is missing (same
id, same key: never a second one) and applies the action to a file still there.

Allowed directories. `from` and `moveDirectory` are resolved (symbolic links and `..`
followed) and must lie inside a directory of the operator's `file_trigger_dirs`. The check
runs when the service loads a trigger (at start and after each deploy); a refused trigger
does not run, and why is logged and kept in its trigger state (`state.error`).

Half-written files. A realtime CREATE or UPDATE fires when the writer closes the file
(inotify's close-write), or, for a writer that keeps it open, once it has not been modified
for `settle_seconds`; a rename into the directory fires at once (a rename is atomic). A poll
leaves files modified less than `settle_seconds` ago for the next poll.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from headwater.daemon.engine.engine import Engine
from headwater.daemon.engine.executor import ExecutionRequest
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.expressions import has_expression
from headwater.daemon.flow.model import Flow
from headwater.daemon.flow.registry import REGISTRY
from headwater.daemon.flow.triggers.files import PollingFileTrigger, RealtimeFileTrigger
from headwater.daemon.flow.types import parse_duration
from headwater.daemon.reconcile import DeploymentCheck
from headwater.daemon.store.store import Row
from headwater.daemon.yamlsource import load

log = logging.getLogger(__name__)

SOURCE_MARK = "fs.local"  # in every file trigger type name: other flows are not parsed
SETTLE_SECONDS = 1.0  # a file unmodified this long (and not closed) counts as complete
RENAME_GRACE_SECONDS = 0.1  # a created file not opened within this was renamed in: complete
MAX_WAIT_SECONDS = 60.0  # the loop looks at its work at least this often
POLL_TYPE = "io.kestra.plugin.fs.local.Trigger"
REALTIME_TYPE = "io.kestra.plugin.fs.local.RealtimeTrigger"
ALLOWED_SETTING = "HEADWATER_FILE_TRIGGER_DIRS"

FileTrigger = PollingFileTrigger | RealtimeFileTrigger
TriggerKey = tuple[str, str, str]
"""(namespace, flow id, trigger id)."""


class FileTriggerRefused(HeadwaterError):
    """A file trigger that cannot run here; `field` is the property at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class FileInfo:
    """What identifies a file: a file rewritten in place has a new size or mtime."""

    path: str
    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: str, info: os.stat_result) -> FileInfo:
        return cls(path, info.st_size, info.st_mtime_ns, info.st_ino)


@dataclass
class Watched:
    """A file trigger of a deployed flow, checked and ready to run."""

    namespace: str
    flow_id: str
    model: FileTrigger
    directory: Path
    pattern: re.Pattern[str] | None
    move_to: Path | None = None
    interval: float = 0.0
    max_files: int = 0
    next_poll: float = 0.0
    watch: Any = None
    """The watchdog watch of a realtime trigger (shared by triggers on one directory)."""
    handler: Any = None

    @property
    def key(self) -> TriggerKey:
        return (self.namespace, self.flow_id, self.model.id)

    @property
    def name(self) -> str:
        return f"{self.namespace}.{self.flow_id}/{self.model.id}"

    @property
    def polling(self) -> bool:
        return isinstance(self.model, PollingFileTrigger)

    @property
    def on(self) -> str:
        """The realtime events that fire (CREATE, UPDATE, DELETE, CREATE_OR_UPDATE)."""
        return self.model.on if isinstance(self.model, RealtimeFileTrigger) else ""

    def same(self, other: Watched) -> bool:
        """Nothing that matters changed (a new revision with the same trigger keeps running)."""
        return self.model == other.model and self.directory == other.directory

    def matches(self, path: str) -> bool:
        """Inside the directory (one level unless recursive) and matching regExp."""
        parent = Path(path).parent
        inside = parent == self.directory or (
            self.model.recursive and self.directory in parent.parents
        )
        if self.move_to is not None and (parent == self.move_to or self.move_to in parent.parents):
            return False  # files MOVE put aside are not picked again
        return inside and (self.pattern is None or self.pattern.fullmatch(path) is not None)


@dataclass
class _Pending:
    """A realtime event waiting for its file to be complete."""

    watched: Watched
    path: str
    event: str
    due: float
    closed: bool = False
    """Its writer closed it: complete."""
    written: bool = False
    """A writer opened or modified it (a file renamed in has neither)."""


@dataclass
class _Loaded:
    """The deployed file triggers: those that can run, why the others cannot, types."""

    started: dict[TriggerKey, Watched] = field(default_factory=dict)
    refused: dict[TriggerKey, str] = field(default_factory=dict)
    types: dict[TriggerKey, str] = field(default_factory=dict)


def allowed_directory(raw: str, allowed: Sequence[Path], name: str = "from") -> Path:
    """`raw` resolved (symbolic links and `..` followed), if it lies in an allowed directory."""
    if has_expression(raw):
        raise FileTriggerRefused(name, f"'{name}' must be a literal path; it is not rendered")
    path = Path(raw)
    if not path.is_absolute():
        raise FileTriggerRefused(name, f"'{name}' must be an absolute path, got '{raw}'")
    resolved = path.resolve()
    if not allowed:
        raise FileTriggerRefused(
            name,
            f"'{raw}' is not allowed: this deployment allows file triggers in no directory "
            f"(an operator lists them in {ALLOWED_SETTING})",
        )
    if any(resolved == root or root in resolved.parents for root in allowed):
        return resolved
    shown = "" if str(resolved) == raw else f" (resolved: {resolved})"
    roots = ", ".join(str(root) for root in allowed)
    raise FileTriggerRefused(
        name,
        f"'{raw}'{shown} is outside the directories file triggers may read: {roots} "
        f"({ALLOWED_SETTING})",
    )


def deployment_check(allowed: Sequence[Path]) -> DeploymentCheck:
    """The deploy-time check: a flow whose file trigger names a directory outside `allowed`
    is invalid, so the commit is refused (the daemon checks again when it loads the trigger:
    the setting or a symbolic link may change after the deploy)."""
    roots = [Path(path).resolve() for path in allowed]

    def check(raw: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
        triggers = raw.get("triggers")
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for index, item in enumerate(triggers if isinstance(triggers, list) else []):
            if not isinstance(item, dict) or item.get("disabled") is True:
                continue
            entry = REGISTRY.resolve(item.get("type"), "trigger")
            if entry is None or entry.model not in (PollingFileTrigger, RealtimeFileTrigger):
                continue
            for name in ("from", "moveDirectory"):
                value = item.get(name)
                relative = isinstance(value, str) and not value.startswith(("/", "{"))
                if not isinstance(value, str) or relative:
                    continue  # validation reports relative paths
                try:
                    allowed_directory(value, roots, name)
                except FileTriggerRefused as exc:
                    problems.append((("triggers", index, name), str(exc)))
        return problems

    return check


def check_trigger(
    namespace: str, flow_id: str, model: FileTrigger, allowed: Sequence[Path]
) -> Watched:
    """The trigger made ready to run; FileTriggerRefused says what stops it."""
    directory = allowed_directory(model.from_, allowed)
    if not directory.is_dir():
        raise FileTriggerRefused("from", f"'{model.from_}' is not a directory")
    watched = Watched(namespace, flow_id, model, directory, _pattern(model.regExp))
    if isinstance(model, PollingFileTrigger):
        watched.interval = _interval(model.interval)
        if not isinstance(model.maxFiles, int):
            raise FileTriggerRefused("maxFiles", "'maxFiles' must be a literal number")
        watched.max_files = model.maxFiles
        if model.action == "MOVE" and model.moveDirectory:
            watched.move_to = allowed_directory(model.moveDirectory, allowed, "moveDirectory")
            if watched.move_to == directory:
                raise FileTriggerRefused(
                    "moveDirectory", "'moveDirectory' must differ from the directory polled"
                )
    return watched


def _pattern(raw: str | None) -> re.Pattern[str] | None:
    if raw is None:
        return None
    if has_expression(raw):
        raise FileTriggerRefused("regExp", "'regExp' must be literal; it is not rendered")
    return re.compile(raw)


def _interval(raw: str) -> float:
    seconds = None if has_expression(raw) else parse_duration(raw)
    if seconds is None or seconds <= 0:
        raise FileTriggerRefused("interval", f"'interval' must be a positive duration, got '{raw}'")
    return seconds


class FileTriggers:
    """Runs the deployed file triggers of one engine.

    `reload()` follows the deployed flows, `recover()` finishes what a dead process left,
    `tick(now)` does what is due (polls, settled events) and says when to look again;
    `start()` does all three and runs the loop in a thread.
    """

    def __init__(
        self,
        engine: Engine,
        allowed: Sequence[Path],
        clock: Callable[[], float] = time.time,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        self.engine = engine
        self.store = engine.store
        self.allowed = [Path(path).resolve() for path in allowed]
        self.clock = clock
        self.settle_seconds = settle_seconds
        self.refused: dict[TriggerKey, str] = {}
        """Why each refused trigger does not run, as `path:line:col: error: message`."""
        self._watched: dict[TriggerKey, Watched] = {}
        self._pending: dict[tuple[TriggerKey, str], _Pending] = {}
        self._deletes: list[tuple[Watched, str]] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition()
        self._poked = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: Any = None
        self._reload_lock = threading.Lock()

    # -- running -------------------------------------------------------------------------
    def start(self) -> None:
        self.reload()
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="file-triggers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._poke()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                due = self.tick()
            except Exception:  # a store error: logged, tried again
                log.exception("file triggers: tick failed; trying again")
                due = None
            wait = MAX_WAIT_SECONDS if due is None else due - self.clock()
            with self._wake:
                if not self._poked:
                    self._wake.wait(min(max(wait, 0.0), MAX_WAIT_SECONDS))
                self._poked = False

    def _poke(self) -> None:
        with self._wake:
            self._poked = True
            self._wake.notify_all()

    def watched(self) -> list[Watched]:
        """The triggers running now."""
        with self._lock:
            return list(self._watched.values())

    # -- following deploys ---------------------------------------------------------------
    def reload(self) -> None:
        """Start new file triggers, stop removed or changed ones (after each deploy)."""
        with self._reload_lock:
            loaded = self._load()
            with self._lock:
                for key, old in list(self._watched.items()):
                    new = loaded.started.get(key)
                    if new is None or not new.same(old):
                        self._unwatch(self._watched.pop(key))
                started = [w for k, w in loaded.started.items() if k not in self._watched]
                for watched in started:
                    watched.next_poll = self.clock()
                    self._watch(watched)
                    self._watched[watched.key] = watched
                before, self.refused = self.refused, loaded.refused
            self._note_refusals(before, [w.key for w in started], loaded.types)
        self._poke()

    def _load(self) -> _Loaded:
        loaded = _Loaded()
        with self.store.read() as tx:
            rows = tx.deployed_sources(SOURCE_MARK)
        for row in rows:
            try:
                flow = self.engine.flows.get(row["namespace"], row["flow_id"], row["revision"])
            except HeadwaterError as exc:  # deployed flows are valid; a store hiccup is not
                log.warning(
                    "file triggers: cannot read %s.%s: %s", row["namespace"], row["flow_id"], exc
                )
                continue
            self._load_flow(row, flow, loaded)
        return loaded

    def _load_flow(self, row: Row, flow: Flow, loaded: _Loaded) -> None:
        if flow.disabled is True:
            return
        for index, model in enumerate(flow.triggers or []):
            if not isinstance(model, FileTrigger) or model.disabled:
                continue
            key = (flow.namespace, flow.id, model.id)
            loaded.types[key] = (
                POLL_TYPE if isinstance(model, PollingFileTrigger) else REALTIME_TYPE
            )
            try:
                loaded.started[key] = check_trigger(flow.namespace, flow.id, model, self.allowed)
            except FileTriggerRefused as exc:
                path = row.get("path") or f"{flow.namespace.replace('.', '/')}/{flow.id}.yaml"
                where = load(row["source"], path).error(("triggers", index, exc.field), str(exc))
                loaded.refused[key] = str(where)
                log.error(
                    "file trigger %s.%s/%s refused: %s",
                    *key,
                    where,
                    extra={"flow": f"{flow.namespace}.{flow.id}", "trigger": model.id},
                )

    def _note_refusals(
        self, before: dict[TriggerKey, str], started: list[TriggerKey], types: dict[TriggerKey, str]
    ) -> None:
        """Keep refusals in the trigger states; clear them for triggers that run now."""
        changed = {k: v for k, v in self.refused.items() if before.get(k) != v}
        cleared = [k for k in before if k not in self.refused] + started
        if not changed and not cleared:
            return
        with self.store.write() as tx:
            for key, error in changed.items():
                tx.note_trigger_error(*key, error, trigger_type=types[key])
            for key in cleared:
                tx.note_trigger_error(*key, None)

    def _watch(self, watched: Watched) -> None:
        if watched.polling:
            return
        if self._observer is None:
            self._observer = Observer()
            self._observer.daemon = True
            self._observer.start()
        watched.handler = _Events(self, watched)
        watched.watch = self._observer.schedule(
            watched.handler, str(watched.directory), recursive=watched.model.recursive
        )

    def _unwatch(self, watched: Watched) -> None:
        if watched.watch is not None:
            # watchdog shares one watch among the handlers of a directory: unschedule
            # only when the last trigger on it goes.
            self._observer.remove_handler_for_watch(watched.handler, watched.watch)
            if not any(w.watch == watched.watch for w in self._watched.values()):
                self._observer.unschedule(watched.watch)
        self._pending = {k: p for k, p in self._pending.items() if k[0] != watched.key}

    # -- the loop's work -----------------------------------------------------------------
    def tick(self, now: float | None = None) -> float | None:
        """Poll the triggers that are due and fire settled events; when to look next."""
        now = self.clock() if now is None else now
        with self._lock:
            polls = [w for w in self._watched.values() if w.polling and w.next_poll <= now]
            for watched in polls:
                watched.next_poll = now + watched.interval
            settled = [p for p in self._pending.values() if p.due <= now]
            for pending in settled:
                del self._pending[(pending.watched.key, pending.path)]
            deletes, self._deletes = self._deletes, []
        for watched, path in deletes:
            self._guarded(watched, functools.partial(self._fire_delete, watched, path))
        for pending in settled:
            self._guarded(pending.watched, functools.partial(self._settle, pending, now))
        for watched in polls:
            self._guarded(watched, functools.partial(self.poll, watched, now))
        with self._lock:
            dues = [w.next_poll for w in self._watched.values() if w.polling]
            dues += [p.due for p in self._pending.values()]
            return min(dues) if dues else None

    def _guarded(self, watched: Watched, work: Callable[[], object]) -> None:
        try:
            work()
        except Exception:  # one trigger's trouble (a vanished directory) spares the others
            log.exception("file trigger %s failed", watched.name, extra={"trigger": watched.name})

    # -- polling -------------------------------------------------------------------------
    def poll(self, watched: Watched, now: float | None = None) -> Row | None:
        """One poll: finish what an earlier one left, then start one execution for up to
        maxFiles new files, oldest first; that execution's row, or None."""
        assert isinstance(watched.model, PollingFileTrigger)
        now = self.clock() if now is None else now
        self._finish_pending(watched.key)
        files = self._listing(watched, now)
        keys = {info: _file_key(watched, info) for info in files}
        with self.store.read() as tx:
            known = tx.known_file_keys(list(keys.values()))
        fresh = [info for info in files if keys[info] not in known][: watched.max_files]
        if not fresh:
            return None
        execution_id = uuid.uuid4().hex[:22]
        batch = f"fs:{watched.name}:{execution_id}"
        rows = [
            self._pickup(watched, info, keys[info], batch, execution_id, index, now)
            for index, info in enumerate(fresh)
        ]
        return self._pick(rows)

    def _listing(self, watched: Watched, now: float) -> list[FileInfo]:
        """Regular files that match and are complete, oldest first (symbolic links skipped)."""
        found: list[FileInfo] = []
        folders = [str(watched.directory)]
        while folders:
            for entry in _entries(folders.pop()):
                if entry.is_dir(follow_symlinks=False):
                    if watched.model.recursive:
                        folders.append(entry.path)
                    continue
                if not entry.is_file(follow_symlinks=False) or not watched.matches(entry.path):
                    continue
                info = entry.stat(follow_symlinks=False)
                if now - info.st_mtime >= self.settle_seconds:
                    found.append(FileInfo.of(entry.path, info))
        found.sort(key=lambda info: (info.mtime_ns, info.path))
        return found

    def _pickup(
        self,
        watched: Watched,
        info: FileInfo,
        key: str,
        batch: str,
        execution_id: str,
        index: int,
        now: float,
    ) -> Row:
        action = watched.model.action if isinstance(watched.model, PollingFileTrigger) else "NONE"
        row: Row = {
            "file_key": key,
            "namespace": watched.namespace,
            "flow_id": watched.flow_id,
            "trigger_id": watched.model.id,
            "batch": batch,
            "execution_id": execution_id,
            "position": index,
            "path": info.path,
            "size": info.size,
            "mtime_ns": info.mtime_ns,
            "inode": info.inode,
            "event": None,
            "action": action,
            "moved_to": None,
            "uri": None,
            "picked_at": now,
            "done": False,
        }
        if action == "MOVE" and watched.move_to is not None:
            row["moved_to"] = str(_move_target(watched, info.path, execution_id))
        elif action == "DELETE":  # the file goes away: the execution reads this copy
            name = Path(info.path).name
            storage_key = (
                f"{watched.namespace.replace('.', '/')}/{watched.flow_id}/executions/"
                f"{execution_id}/trigger/{index}/{name}"
            )
            row["uri"] = self.engine.storage.put_file(storage_key, Path(info.path))
        return row

    # -- realtime ------------------------------------------------------------------------
    def observe(self, watched: Watched, kind: str, path: str, dest: str | None = None) -> None:
        """A watchdog event (from the observer's thread): note it for the loop."""
        if kind == "moved":
            self.observe(watched, "deleted", path)
            if dest is not None:
                self._note(watched, dest, "CREATE", complete=True)
        elif kind == "deleted":
            if watched.matches(path) and watched.on == "DELETE":
                with self._lock:
                    self._pending.pop((watched.key, path), None)
                    self._deletes.append((watched, path))
                self._poke()
        elif kind == "created":
            self._note(watched, path, "CREATE")
        elif kind in ("opened", "modified"):
            self._note(watched, path, "UPDATE", written=True)
        elif kind == "closed":  # closed after writing (inotify's IN_CLOSE_WRITE)
            self._note(watched, path, "UPDATE", complete=True)

    def _note(
        self, watched: Watched, path: str, event: str, complete: bool = False, written: bool = False
    ) -> None:
        if watched.on == "DELETE" or not watched.matches(path):
            return
        now = self.clock()
        with self._lock:
            if self._watched.get(watched.key) is not watched:
                return  # stopped by a deploy meanwhile
            pending = self._pending.get((watched.key, path))
            if pending is None:
                pending = _Pending(watched, path, event, now)
                self._pending[(watched.key, path)] = pending
            elif event == "CREATE":
                pending.event = "CREATE"
            if written:  # a writer has it open: wait for its close, or for quiet
                pending.written, pending.closed = True, False
            pending.closed = pending.closed or complete
            if pending.closed:
                pending.due = now
            elif pending.written:
                pending.due = now + self.settle_seconds
            else:  # created: an open follows at once unless the file was renamed in
                pending.due = now + min(RENAME_GRACE_SECONDS, self.settle_seconds)
        self._poke()

    def _settle(self, pending: _Pending, now: float) -> None:
        """Fire the event if its file is complete, or look again once it may be."""
        try:
            info = os.stat(pending.path, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISREG(info.st_mode):
            return
        complete = pending.closed or not pending.written  # written and closed, or renamed in
        if not complete and now - info.st_mtime < self.settle_seconds:
            pending.due = info.st_mtime + self.settle_seconds
            with self._lock:
                self._pending.setdefault((pending.watched.key, pending.path), pending)
            return
        if _fires(pending.watched.on, pending.event):
            self._fire(pending.watched, FileInfo.of(pending.path, info), pending.event, now)

    def _fire_delete(self, watched: Watched, path: str) -> None:
        gone = FileInfo(path, 0, time.time_ns(), 0)
        self._fire(watched, gone, "DELETE", self.clock())

    def _fire(self, watched: Watched, info: FileInfo, event: str, now: float) -> Row | None:
        key = _file_key(watched, info, event)
        with self.store.read() as tx:
            if tx.known_file_keys([key]):
                return None  # this very file was handed over already (a repeated close)
        execution_id = uuid.uuid4().hex[:22]
        row = self._pickup(
            watched, info, key, f"fs:{watched.name}:{execution_id}", execution_id, 0, now
        )
        row["event"] = event
        return self._pick([row])

    # -- handing files over --------------------------------------------------------------
    def _pick(self, rows: list[Row]) -> Row | None:
        """Record the pickups (unless another process took a file meanwhile), then hand over."""
        with self.store.write() as tx:
            if tx.known_file_keys([r["file_key"] for r in rows]):
                return None
            tx.insert_file_pickups(rows)
        return self._hand_over(rows)

    def recover(self) -> int:
        """Finish every batch a previous process left undone; how many there were."""
        return self._finish_pending(None)

    def _finish_pending(self, key: TriggerKey | None) -> int:
        with self.store.read() as tx:
            rows = tx.pending_file_pickups()
        batches: dict[str, list[Row]] = {}
        for row in rows:
            if key is None or (row["namespace"], row["flow_id"], row["trigger_id"]) == key:
                batches.setdefault(row["batch"], []).append(row)
        for batch in batches.values():
            self._hand_over(batch)
        return len(batches)

    def _hand_over(self, rows: list[Row]) -> Row | None:
        """Create the batch's execution (once, by its key), apply the action, mark it done."""
        first = rows[0]
        key = (first["namespace"], first["flow_id"], first["trigger_id"])
        with self._lock:
            watched = self._watched.get(key)
        request = ExecutionRequest(
            first["namespace"],
            first["flow_id"],
            inputs=dict(watched.model.inputs or {}) if watched else {},
            labels=_labels(watched.model) if watched else {},
            trigger=_payload(rows),
            trigger_key=first["batch"],
            execution_id=first["execution_id"],
        )
        try:
            execution = self.engine.start_execution(request)
        except HeadwaterError as exc:
            self._refuse_batch(rows, exc)
            return None
        try:
            for row in rows:
                _apply_action(row)
        except OSError as exc:  # tried again at the next poll, or the next start
            log.error(
                "file trigger %s.%s/%s: %s of %s failed: %s",
                *key,
                first["action"],
                exc.filename,
                exc.strerror,
                extra={"execution": execution["id"]},
            )
            return execution
        with self.store.write() as tx:
            tx.finish_file_pickups(first["batch"])
        log.info(
            "file trigger %s.%s/%s started execution %s with %d file(s)",
            *key,
            execution["id"],
            len(rows),
            extra={"flow": f"{key[0]}.{key[1]}", "execution": execution["id"]},
        )
        return execution

    def _refuse_batch(self, rows: list[Row], exc: HeadwaterError) -> None:
        """No execution could be made (inputs refused, flow gone): forget the pickups, so the
        files stay where they are and are picked again."""
        first = rows[0]
        log.error(
            "file trigger %s.%s/%s could not start an execution: %s",
            first["namespace"],
            first["flow_id"],
            first["trigger_id"],
            exc,
            extra={"flow": f"{first['namespace']}.{first['flow_id']}"},
        )
        with self.store.write() as tx:
            tx.forget_file_pickups(first["batch"])
        for row in rows:
            if row["uri"]:
                self.engine.storage.delete(row["uri"])


class _Events(FileSystemEventHandler):
    """Hands one trigger's watchdog events to the service."""

    def __init__(self, service: FileTriggers, watched: Watched) -> None:
        self.service = service
        self.watched = watched

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        dest = os.fsdecode(event.dest_path) if event.dest_path else None
        self.service.observe(self.watched, event.event_type, os.fsdecode(event.src_path), dest)


def _entries(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except FileNotFoundError:
        log.warning("file trigger: directory %s is gone", folder)
        return []


def _file_key(watched: Watched, info: FileInfo, event: str | None = None) -> str:
    parts = [
        *watched.key,
        event or "",
        info.path,
        str(info.size),
        str(info.mtime_ns),
        str(info.inode),
    ]
    return "fs:" + hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def _move_target(watched: Watched, path: str, execution_id: str) -> Path:
    """Where MOVE puts a file: the same relative path under moveDirectory, renamed with the
    execution id when a file of that name is there already (nothing is overwritten)."""
    assert watched.move_to is not None
    target = watched.move_to / Path(path).relative_to(watched.directory)
    if target.exists():
        target = target.with_name(f"{target.stem}-{execution_id}{target.suffix}")
    return target


def _apply_action(row: Row) -> None:
    """MOVE or DELETE the picked file, if it is still the very file that was picked."""
    if row["action"] == "NONE" or row["event"] is not None:
        return
    source = Path(row["path"])
    try:
        info = os.stat(source, follow_symlinks=False)
    except FileNotFoundError:
        return  # done before the process died, or removed by someone else
    if (info.st_ino, info.st_size, info.st_mtime_ns) != (
        row["inode"],
        row["size"],
        row["mtime_ns"],
    ):
        return  # a new file of the same name: it is picked on its own
    if row["action"] == "MOVE":
        target = Path(row["moved_to"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)
    elif row["action"] == "DELETE":
        source.unlink()


def _payload(rows: list[Row]) -> dict[str, Any]:
    """What `{{ trigger.* }}` shows: `files` for a poll, `file` and `event` for realtime."""
    first = rows[0]
    files = [_described(row) for row in rows]
    if first["event"] is not None:
        return {
            "type": REALTIME_TYPE,
            "id": first["trigger_id"],
            "event": first["event"],
            "file": files[0],
        }
    return {"type": POLL_TYPE, "id": first["trigger_id"], "files": files}


def _described(row: Row) -> dict[str, Any]:
    path = row["moved_to"] or row["path"]
    described: dict[str, Any] = {
        "path": path,
        "localPath": path,
        "name": Path(row["path"]).name,
        "size": row["size"],
        "lastModifiedTime": _rfc3339(row["mtime_ns"]),
    }
    if row["moved_to"]:
        described["originalPath"] = row["path"]
    if row["uri"]:
        described["uri"] = row["uri"]
    return described


def _rfc3339(ns: int) -> str:
    moment = datetime.fromtimestamp(ns / 1e9, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fires(on: str, event: str) -> bool:
    return on == event or (on == "CREATE_OR_UPDATE" and event in ("CREATE", "UPDATE"))


def _labels(model: FileTrigger) -> dict[str, str]:
    labels = model.labels
    if isinstance(labels, list):
        return {item.key: item.value for item in labels}
    return {k: str(v) for k, v in (labels or {}).items()}
