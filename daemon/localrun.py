"""`headwater run FILE`: one flow, once, on this machine, with live progress.

The flow file (and, for subflows, the flows folder it sits in) is deployed into the
data directory's store as a local revision, an execution starts, and the terminal
shows each task run's state and duration as it changes and the logs as the store
receives them (`Progress`). Ctrl-C kills the execution cleanly. A data directory that
holds an unfinished execution of the same flow (the previous `run` was killed) carries
that one on instead of starting another: a task run the killed process left RUNNING is
taken over once its lease has expired (30 s; `HEADWATER_LEASE_SECONDS` sets it), its
leftover process group is ended first, and the lost attempt counts as an attempt.
Namespace files come from the flows folder's `_files/` folders.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from pydantic import ValidationError

from headwater.daemon import defaults
from headwater.daemon.engine.context import iso
from headwater.daemon.engine.engine import Engine, EngineSettings
from headwater.daemon.engine.executor import ExecutionRequest
from headwater.daemon.engine.flows import parse_flow
from headwater.daemon.engine.inputs import UploadedFile
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.settings import Settings
from headwater.daemon.store.queries import execution_logs
from headwater.daemon.store.store import Row, Store, Tx

TERMINAL = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED", "SKIPPED")
OPENING = ("CREATED", "QUEUED", "RUNNING", "RESTARTED")
PROGRESS_POLL_SECONDS = 0.05
LINES_PER_READ = 10_000  # log lines read in one query; a poll reads until none are left
LEASE_SECONDS_VARIABLE = "HEADWATER_LEASE_SECONDS"
"""Seconds a task run's lease lasts (default 30): how soon a `run` that carries on after a
killed one can take over the task run the killed one left RUNNING."""
HEARTBEATS_PER_LEASE = 10  # a lease is at least ten heartbeats long (DESIGN)


def parse_input_flags(flags: Sequence[str]) -> dict[str, Any]:
    """`-i name=value` flags; `name=@path` reads a file for a FILE input."""
    given: dict[str, Any] = {}
    for flag in flags:
        name, sep, value = flag.partition("=")
        if not sep or not name:
            raise ValueError(f"-i {flag!r}: write name=value")
        if value.startswith("@"):
            path = Path(value[1:])
            given[name] = UploadedFile(path.name, path.read_bytes())
        else:
            given[name] = value
    return given


def find_flows_dir(file: Path, flows_dir: Path | None) -> Path | None:
    if flows_dir is not None:
        return flows_dir
    for parent in file.resolve().parents:
        if parent.name == defaults.DEFAULT_FLOWS_DIR:
            return parent
    return None


class Progress:
    """Prints the task-run state changes and log lines of one execution tree as the store
    has them: every stored line once, in the store's order, with each state change placed
    among the lines (a task's SUCCESS after its own lines and before a later task's).

    Lines are read from the store, not taken as the engine writes them: a listener added
    once the execution had started missed the lines written before it, and lines printed
    as written overtook the state changes printed by the next poll (issue 15, item 3).
    """

    def __init__(self, store: Store, out: TextIO) -> None:
        self.store = store
        self.out = out
        self.seen: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.after: dict[str, int] = {}
        """Per execution of the tree, the id of its last line printed."""

    def poll(self, execution_id: str) -> Row | None:
        """Print what changed since the last poll; the execution's row, read with it."""
        # One read transaction, in this order: a task's lines are stored before (or with)
        # its end, and an execution ends after its task runs, so an ended execution or
        # task run comes with all of its lines, even where each statement sees the latest.
        with self.store.read() as tx:
            execution = tx.execution(execution_id)
            changes = self._changes(tx, execution_id)
            lines = self._new_lines(tx)
        for item in interleave(changes, lines):
            self.out.write(self._line(item) if isinstance(item, dict) else item.text())
        self.out.flush()
        return execution

    def _changes(self, tx: Tx, execution_id: str) -> list[Change]:
        """The state changes of an execution's task runs, a subflow's after its task."""
        self.after.setdefault(execution_id, 0)
        changes = []
        for run in tx.task_runs(execution_id):
            label = self.names[run["id"]] = _label(run)
            if self.seen.get(run["id"]) != run["state"]:
                self.seen[run["id"]] = run["state"]
                changes.append(Change(run, run["state"], label))
            child = (run.get("outputs") or {}).get("executionId")
            if child:
                changes += self._changes(tx, child)
        return changes

    def _new_lines(self, tx: Tx) -> list[Row]:
        """The lines of the tree not printed yet, in the order they were stored."""
        # A local run's store is SQLite: one writer at a time, so line ids follow the
        # commits and reading after the last id printed skips none.
        lines: list[Row] = []
        for execution_id, after in self.after.items():
            while True:
                page = execution_logs(tx, execution_id, after_id=after, limit=LINES_PER_READ)
                lines += page
                if len(page) < LINES_PER_READ:
                    break
                after = page[-1]["id"]
        for line in lines:
            self.after[line["execution_id"]] = max(self.after[line["execution_id"]], line["id"])
        return sorted(lines, key=lambda line: int(line["id"]))

    def _line(self, row: Row) -> str:
        name = self.names.get(row["task_run_id"] or "", "")
        return f"  {row['level']:<5} {name:<20} {row['message']}\n"


@dataclasses.dataclass(frozen=True)
class Change:
    """A task run seen in a new state."""

    run: Row
    state: str
    label: str

    @property
    def opening(self) -> bool:
        """A state a task run is in before its lines (RUNNING), not after them (SUCCESS)."""
        return self.state in OPENING

    @property
    def when(self) -> float:
        run = self.run
        if self.opening:
            return float(run["start_date"] or run["created_at"])
        return float(run["end_date"] or run["created_at"])

    def text(self) -> str:
        run, state = self.run, self.state
        took = ""
        if state in TERMINAL and run["start_date"] and run["end_date"]:
            took = f" in {(run['end_date'] - run['start_date']) * 1000:.0f} ms"
        extra = f": {run['error']}" if run.get("error") and state in ("FAILED", "KILLED") else ""
        return f"{state:<9} {self.label}{took}{extra}\n"


def interleave(changes: Sequence[Change], lines: Sequence[Row]) -> list[Change | Row]:
    """The lines in their order, each change placed before the first line written after
    it; a task run's opening state goes before its first line, any other after its last."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    latest: list[float] = []  # the latest timestamp up to each line: ascending
    for index, line in enumerate(lines):
        if line["task_run_id"] is not None:
            first.setdefault(line["task_run_id"], index)
            last[line["task_run_id"]] = index
        latest.append(max(float(line["timestamp"]), latest[-1] if latest else -math.inf))

    def slot(change: Change) -> int:
        at = bisect.bisect_right(latest, change.when)
        run_id = change.run["id"]
        if change.opening:
            return min(at, first.get(run_id, at))
        return max(at, last.get(run_id, -1) + 1)

    slots = {id(change): slot(change) for change in changes}
    placed = sorted(changes, key=lambda change: (slots[id(change)], change.when))
    merged: list[Change | Row] = []
    for index, line in enumerate(lines):
        while placed and slots[id(placed[0])] <= index:
            merged.append(placed.pop(0))
        merged.append(line)
    return merged + placed


def _label(run: Row) -> str:
    return str(run["task_id"]) + (f"[{run['value']}]" if run["value"] is not None else "")


def run_local(
    file: Path,
    given: dict[str, Any],
    flows_dir: Path | None,
    data_dir: Path | None,
    out: TextIO = sys.stdout,
) -> int:
    """Run `file` once; the process exit status (0 on SUCCESS or WARNING)."""
    source = file.read_text(encoding="utf-8")
    flow = parse_flow(source, str(file))
    temporary = None
    if data_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="headwater-run-")
        data_dir = Path(temporary.name)
    folder = find_flows_dir(file, flows_dir)
    engine = Engine(
        with_runners(engine_settings(data_dir)),
        namespace_files=(lambda ns, _commit: _files_in(folder, ns)) if folder else None,
    )
    if folder is not None:
        engine.flow_source = lambda ns, fid: _source_in(folder, ns, fid)
    try:
        engine.deploy_source(source, str(file))
        engine.start()
        return _follow(engine, flow.namespace, flow.id, given, out)
    finally:
        engine.stop(grace=5)
        if temporary is not None:
            temporary.cleanup()


def engine_settings(data_dir: Path, environ: Mapping[str, str] = os.environ) -> EngineSettings:
    """The engine's settings; `HEADWATER_LEASE_SECONDS` shortens the task runs' leases."""
    text = environ.get(LEASE_SECONDS_VARIABLE, "").strip()
    if not text:
        return EngineSettings(data_dir=data_dir)
    try:
        lease = float(text)
    except ValueError:
        lease = 0.0
    if not lease > 0:
        raise HeadwaterError(f"{LEASE_SECONDS_VARIABLE} must be a number of seconds, got {text!r}")
    return EngineSettings(
        data_dir=data_dir, lease_seconds=lease, heartbeat_seconds=lease / HEARTBEATS_PER_LEASE
    )


def with_runners(settings: EngineSettings) -> EngineSettings:
    """`headwater up`'s runner settings (`HEADWATER_DEFAULT_RUNNER`, `HEADWATER_DOCKER_*`,
    `HEADWATER_TASK_USER`)."""
    try:
        daemon = Settings()
    except ValidationError as exc:
        raise HeadwaterError(f"settings from HEADWATER_* variables: {exc}") from None
    return dataclasses.replace(
        settings,
        default_runner=daemon.default_runner,
        docker=daemon.docker_settings(),
        task_user=daemon.task_user,
    )


def _files_in(folder: Path, namespace: str) -> dict[str, bytes]:
    """The namespace files of `namespace` in a flows folder (its `_files/`), by path."""
    root = folder.joinpath(*namespace.split("."), defaults.NAMESPACE_FILES_DIR)
    if not root.is_dir():
        return {}
    inside = root.resolve()
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink() and path.resolve().is_relative_to(inside)
    }


def _source_in(folder: Path, namespace: str, flow_id: str) -> str | None:
    for suffix in defaults.FLOW_FILE_SUFFIXES:
        candidate = folder.joinpath(*namespace.split("."), flow_id + suffix)
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    return None


def _follow(
    engine: Engine, namespace: str, flow_id: str, given: dict[str, Any], out: TextIO
) -> int:
    unfinished = engine.unfinished(namespace, flow_id)
    if unfinished:
        execution = unfinished[0]
        out.write(f"carrying on with unfinished execution {execution['id']}\n")
    else:
        execution = engine.start_execution(ExecutionRequest(namespace, flow_id, inputs=given))
        out.write(f"execution {execution['id']} of {namespace}.{flow_id} started\n")
    progress = Progress(engine.store, out)
    interrupted = threading.Event()

    def on_interrupt(_signum: int, _frame: FrameType | None) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()
        out.write("\nkilling the execution (Ctrl-C again to leave at once)\n")
        engine.kill(execution["id"])

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        row = progress.poll(execution["id"])
        while row is None or row["state"] not in TERMINAL:
            time.sleep(PROGRESS_POLL_SECONDS)
            row = progress.poll(execution["id"])
    finally:
        signal.signal(signal.SIGINT, previous)
    return _summary(row, out)


def _summary(row: Row, out: TextIO) -> int:
    took = (row["end_date"] or 0) - (row["start_date"] or row["created_at"])
    out.write(f"\nexecution {row['id']} ended {row['state']} in {took:.2f} s\n")
    if row.get("error"):
        out.write(f"error: {row['error']}\n")
    if row.get("outputs"):
        out.write("outputs:\n" + json.dumps(row["outputs"], indent=2, default=str) + "\n")
    out.write(f"(started {iso(row['created_at'])})\n")
    return 0 if row["state"] in ("SUCCESS", "WARNING") else 1
