"""Workers: claim runnable task runs, run them, record the result.

A worker holds a lease on each task run it runs and renews it on a heartbeat; a
worker that cannot renew stops its own child process (the task run is someone else's
now). A worker that dies loses its leases, and the executor retries or fails those
task runs by their policy. Several workers run as threads of one process by default.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from headwater.daemon.engine import tasks as _tasks  # noqa: F401  (registers implementations)
from headwater.daemon.engine.context import (
    Renderer,
    execution_variables,
    referenced_names,
    run_variables,
    text_of,
)
from headwater.daemon.engine.executor import Executor
from headwater.daemon.engine.flows import FlowCache
from headwater.daemon.engine.inputs import secret_values
from headwater.daemon.engine.logs import LogWriter
from headwater.daemon.engine.states import State
from headwater.daemon.engine.taskapi import (
    IMPLEMENTATIONS,
    InternalStorage,
    TaskFailed,
    TaskResult,
)
from headwater.daemon.engine.tasks import workdir
from headwater.daemon.engine.tasks.properties import text_list
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.flow import registry as reg
from headwater.daemon.flow.base import Task
from headwater.daemon.flow.tasks.workingdirectory import WorkingDirectory
from headwater.daemon.store.store import Row, Store, Tx
from headwater.daemon.store.writes import store_unavailable
from headwater.runners.base import LineSink, Runner, RunResult, RunSpec

log = logging.getLogger(__name__)

WORKDIRS = "workdirs"  # folder of the data directory where attempts get their directories
LEASE_SECONDS = 30.0  # a task run's lease; at least ten heartbeats long (DESIGN)
HEARTBEAT_SECONDS = 3.0
IDLE_POLL_SECONDS = 1.0  # a worker with nothing to do looks again this often (other processes)
SHUTDOWN_GRACE_SECONDS = 30.0  # on SIGTERM, running task runs get this long to finish
SHUTDOWN_RELEASE_SECONDS = 10.0  # then this long to stop and be handed back
RECORD_RETRY_SECONDS = 0.5  # an attempt's end the store refused is tried again after this
RECORD_RETRY_MAX_SECONDS = 5.0  # ... growing to at most this
UNRECORDABLE = "internal error: the task's result could not be recorded"
EXECUTIONS_CACHED = 1000  # executions whose fixed parts a worker keeps


@dataclass
class WorkerSettings:
    data_dir: Path
    lease_seconds: float = LEASE_SECONDS
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    idle_poll_seconds: float = IDLE_POLL_SECONDS


NamespaceFiles = Callable[[str, str | None], Mapping[str, bytes]]
"""(namespace, commit) -> namespace files by path."""


@dataclass
class Running:
    run: Row
    cancel: threading.Event = field(default_factory=threading.Event)
    release: bool = False
    """Stopped by a shutdown: hand the task run back without using an attempt."""
    made_directory: bool = False
    """The attempt asked for a fresh working directory (removed when it ends)."""


class RunContext:
    """The TaskContext a task implementation receives."""

    def __init__(
        self,
        worker: Worker,
        run: Row,
        execution: Row,
        task: Task,
        cancel: threading.Event,
        runner: Runner,
    ) -> None:
        self.worker = worker
        self.run = run
        self.execution = execution
        self.task = task
        self.execution_id = execution["id"]
        self.task_run_id = run["id"]
        self.attempt = run["attempt"]
        self.namespace = execution["namespace"]
        self.flow_id = execution["flow_id"]
        self.cancel = cancel
        self.storage: InternalStorage = worker.storage
        self.runner: Runner = _RecordingRunner(runner, lambda pgid: worker.record_pgid(run, pgid))
        self.shared: SharedDirectory | None = None
        """The enclosing WorkingDirectory's directory, once the task asked for its own."""
        self._variables: dict[str, Any] | None = None
        self._workdir: Path | None = None

    def variables(self) -> dict[str, Any]:
        if self._variables is None:
            self._variables = self.worker.variables_for(self.run, self.execution, self.task)
        return self._variables

    def _read(self, path: str) -> str:
        files = self.namespace_files()
        if path not in files:
            raise HeadwaterError(f"read('{path}'): no such namespace file in {self.namespace}")
        return files[path].decode("utf-8", errors="replace")

    def render(self, value: Any) -> Any:
        try:
            return self.worker.renderer.render(value, self.variables(), read=self._read)
        except HeadwaterError as exc:
            raise TaskFailed(str(exc)) from None

    def render_text(self, value: Any) -> str:
        return text_of(self.render(value))

    def log(self, level: str, message: str) -> None:
        self.worker.logs.write(self.execution_id, self.task_run_id, self.attempt, level, message)

    def working_directory(self) -> Path:
        if self._workdir is None:
            self.shared = self.worker.shared_directory(self.run, self.execution)
            self._workdir = self.shared.path if self.shared else self.worker.workdir_for(self.run)
        return self._workdir

    def working_directory_is_shared(self) -> bool:
        self.working_directory()
        return self.shared is not None

    def namespace_files(
        self, include: list[str] | None = None, exclude: list[str] | None = None
    ) -> Mapping[str, bytes]:
        files = self.worker.namespace_files(self.namespace, self.execution.get("commit_sha"))
        return {
            path: data
            for path, data in files.items()
            if (not include or any(fnmatch.fnmatch(path, p) for p in include))
            and not any(fnmatch.fnmatch(path, p) for p in exclude or [])
        }

    def output_key(self, name: str) -> str:
        return (
            f"{self.namespace.replace('.', '/')}/{self.flow_id}/executions/{self.execution_id}/"
            f"tasks/{self.run['task_id']}/{self.task_run_id}/{self.attempt}/{name}"
        )


@dataclass
class SharedDirectory:
    """The directory the children of a WorkingDirectory task share, and that task's run."""

    path: Path
    run: Row
    task: WorkingDirectory


class _RecordingRunner:
    """A runner that records each started process group, to end it after a crash."""

    def __init__(self, runner: Runner, record: Callable[[int], None]) -> None:
        self.runner = runner
        self.record = record

    def run(
        self,
        spec: RunSpec,
        on_line: LineSink,
        cancel: threading.Event,
        on_start: Callable[[int], None] | None = None,
    ) -> RunResult:
        def started(pgid: int) -> None:
            self.record(pgid)
            if on_start is not None:
                on_start(pgid)

        return self.runner.run(spec, on_line, cancel, started)


class Worker:
    """One worker: claims and runs one task run at a time (`run_once` steps it)."""

    def __init__(
        self,
        store: Store,
        executor: Executor,
        flows: FlowCache,
        renderer: Renderer,
        logs: LogWriter,
        storage: InternalStorage,
        runners: Mapping[str, Runner],
        settings: WorkerSettings,
        namespace_files: NamespaceFiles | None = None,
        clock: Callable[[], float] = time.time,
        name: str | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.flows = flows
        self.renderer = renderer
        self.logs = logs
        self.storage = storage
        self.runners = runners
        self.settings = settings
        self._namespace_files = namespace_files
        self.clock = clock
        self.name = name or f"worker-{uuid.uuid4().hex[:8]}"
        self.running: dict[str, Running] = {}
        self._executions: dict[str, Row] = {}
        self.stopping = threading.Event()
        """Set when the worker is to stop (its pool's stop event once it serves)."""
        self._next: Row | None = None
        """The task run claimed in the commit that recorded the last one, to run next."""
        self._found_none = False
        """That commit found nothing to claim: wait for work rather than ask again."""

    # -- one step ----------------------------------------------------------------------
    def run_once(self) -> bool:
        """Claim one due task run and run it to its end; False when there was none."""
        run, self._next = self._next, None
        if run is None:
            if self._found_none:  # the last commit looked already
                self._found_none = False
                return False
            now = self.clock()
            run = self.store.claim_task_run(
                self.name, now, now + self.settings.lease_seconds, self.clock, self._executions
            )
            if run is None:
                return False
        fetched = run.pop("_execution", None)
        if fetched is not None and run["execution_id"] not in self._executions:
            self._remember(fetched)
        run["attempt_start"] = self.clock()
        running = Running(run)
        self.running[run["id"]] = running
        key = (run["id"], run["attempt"])
        self.logs.open(run["execution_id"], key, running.cancel)
        try:
            execution = self._execution(run["execution_id"])
            result = self._execute(run, execution, running.cancel)
            self._log_outcome(run, execution, running, result)
            self.logs.close(key)
            self._record(run, execution, running, result)
        finally:
            self.logs.close(key)
            self.running.pop(run["id"], None)
            # A fresh working directory served one attempt: its output files are kept
            # in internal storage by now. (A WorkingDirectory's shared one stays.)
            if running.made_directory:
                shutil.rmtree(self._fresh_directory(run), ignore_errors=True)
        return True

    def _record(self, run: Row, execution: Row, running: Running, result: TaskResult) -> None:
        """Store the attempt's logs and result; while the store cannot be written, wait.

        The task's outcome is decided by the task: a store that is locked by another
        program or out of disk for a while delays the record, it does not fail the task
        (the run stays ours, so its lease is not taken from it meanwhile). A result the
        store cannot take at all (a bug, a value it cannot encode) fails the attempt now,
        rather than when its lease runs out.
        """
        failures = 0
        while True:
            try:
                if running.release:
                    self.logs.flush()
                    self.store.release_task_run(run["id"], run["attempt"], self.name)
                    return
                with self.logs.draining() as lines:  # written with the result, in order
                    self.executor.finish_attempt(
                        run,
                        execution,
                        self.name,
                        result,
                        lines,
                        claim=None if self.stopping.is_set() else self._claim_in,
                    )
                return
            except OperationalError as error:
                reason = store_unavailable(error)
                if reason is None or self.stopping.is_set():
                    raise
                failures += 1
                if failures == 1:
                    log.warning(
                        "cannot record the end of a task run (%s); trying again",
                        reason,
                        extra={"task_run": run["id"]},
                    )
                self.stopping.wait(min(RECORD_RETRY_SECONDS * failures, RECORD_RETRY_MAX_SECONDS))
            except Exception as exc:
                if result.error is not None and result.error.startswith(UNRECORDABLE):
                    raise  # even the failure could not be recorded: the lease decides
                log.exception("cannot record a task run's result", extra={"task_run": run["id"]})
                result = TaskResult(State.FAILED, error=f"{UNRECORDABLE}: {type(exc).__name__}")

    def _claim_in(self, tx: Tx) -> None:
        """Claim the next task run in `tx`, the commit that records the last one."""
        now = self.clock()
        run = tx.claim_task_run(self.name, now, now + self.settings.lease_seconds, self._executions)
        tx.committed.append(functools.partial(self._claimed, run))

    def _claimed(self, run: Row | None) -> None:
        self._next, self._found_none = run, run is None

    def hand_back_claimed(self) -> None:
        """Hand back the task run claimed for later and not started (the worker stops)."""
        run, self._next = self._next, None
        if run is not None:
            self.store.release_task_run(run["id"], run["attempt"], self.name)

    def _fresh_directory(self, run: Row) -> Path:
        return self.settings.data_dir / WORKDIRS / f"{run['id']}-{run['attempt']}"

    def _execution(self, execution_id: str) -> Row:
        """The execution row; its fixed parts are cached (labels are read when used)."""
        cached = self._executions.get(execution_id)
        if cached is None:
            with self.store.read() as tx:
                cached = tx.execution(execution_id)
            if cached is None:
                raise HeadwaterError(f"execution {execution_id} does not exist")
            self._remember(cached)
        return cached

    def _remember(self, execution: Row) -> None:
        self._mask_secret_inputs(execution)
        if len(self._executions) > EXECUTIONS_CACHED:
            self._executions.clear()
        self._executions[execution["id"]] = execution

    def _mask_secret_inputs(self, execution: Row) -> None:
        """Mask SECRET inputs here too: this process may not be the one that created it."""
        flow = self.flows.get(
            execution["namespace"], execution["flow_id"], execution["flow_revision"]
        )
        inputs = execution.get("inputs") or {}
        if self.renderer.sealer is not None:
            inputs = self.renderer.sealer.open_all(inputs)
        self.renderer.masker.add(secret_values(flow.inputs, inputs))

    def _execute(self, run: Row, execution: Row, cancel: threading.Event) -> TaskResult:
        try:
            task = self.flows.task(
                execution["namespace"],
                execution["flow_id"],
                execution["flow_revision"],
                run["task_id"],
            )
            entry = reg.REGISTRY.resolve(task.type, "task")
            implementation = IMPLEMENTATIONS.get(entry.short) if entry else None
            if implementation is None:
                return TaskResult(State.FAILED, error=f"no implementation for {task.type}")
            runner = self._runner_for(task)
            context = RunContext(self, run, execution, task, cancel, runner)
            result = implementation(context)
            if context.shared is not None and result.state != State.FAILED:
                self.collect_shared(context.shared, execution)
        except TaskFailed as exc:
            result = TaskResult(State.FAILED, error=str(exc))
        except HeadwaterError as exc:
            result = TaskResult(State.FAILED, error=str(exc))
        except Exception as exc:  # a bug must fail the attempt, never the worker
            log.exception("task implementation crashed", extra={"task_run": run["id"]})
            result = TaskResult(State.FAILED, error=f"internal error: {type(exc).__name__}: {exc}")
        if cancel.is_set() and result.state == State.FAILED:
            result.state = State.KILLED
        return result

    def _log_outcome(self, run: Row, execution: Row, running: Running, result: TaskResult) -> None:
        """The attempt's error as its last log line; an attempt stopped to be handed back
        says so instead: it was not killed, and it runs again under the same number."""
        if running.release:
            message = (
                "stopped: Headwater is shutting down; the task run is handed back without "
                "using an attempt and runs again (lines after this one are its new start)"
            )
            self.logs.write(execution["id"], run["id"], run["attempt"], "WARN", message)
        elif result.error:
            self.logs.write(execution["id"], run["id"], run["attempt"], "ERROR", result.error)

    def _runner_for(self, task: Task) -> Runner:
        runner_spec = getattr(task, "taskRunner", None)
        kind = getattr(runner_spec, "type", None)
        entry = reg.REGISTRY.resolve(kind, "runner") if kind else None
        name = entry.short if entry else "default"
        runner = self.runners.get(name) or self.runners.get("default")
        if runner is None:
            raise HeadwaterError(f"this deployment has no runner for {kind}")
        return runner

    # -- what tasks see ------------------------------------------------------------------
    def variables_for(self, run: Row, execution: Row, task: Task) -> dict[str, Any]:
        """The render context of a task run; the store is read only for names it uses."""
        names = referenced_names(task)
        runs: list[Row] = []
        fresh = execution
        if names & {"outputs", "parent", "parents", "labels"}:
            with self.store.read() as tx:
                runs = tx.task_runs(execution["id"])
                fresh = tx.execution(execution["id"]) or execution
        flow = self.flows.get(
            execution["namespace"], execution["flow_id"], execution["flow_revision"]
        )
        by_id = {r["id"]: r for r in runs}
        parents = []
        parent_id = run.get("parent_id")
        while parent_id is not None and parent_id in by_id:
            parents.append(by_id[parent_id])
            parent_id = by_id[parent_id]["parent_id"]
        base = execution_variables(flow, fresh, runs, self.renderer.environ, self.renderer.sealer)
        return run_variables(base, run, task.type, parents)

    def record_pgid(self, run: Row, pgid: int) -> None:
        """Keep the process group of the attempt running `run`: a restarted daemon ends
        it before the task run is handed out again."""
        self.store.record_pgid(run["id"], run["attempt"], self.name, pgid)

    def workdir_for(self, run: Row) -> Path:
        """A fresh directory for one attempt (removed when the attempt ends)."""
        running = self.running.get(run["id"])
        if running is not None:
            running.made_directory = True
        path = self._fresh_directory(run)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def shared_directory(self, run: Row, execution: Row) -> SharedDirectory | None:
        """The enclosing WorkingDirectory's directory (prepared by its first child), if any."""
        found = self._enclosing_working_directory(run)
        if found is None:
            return None
        parent, task = found
        shared = SharedDirectory(self.settings.data_dir / WORKDIRS / parent["id"], parent, task)
        if not shared.path.is_dir():
            self._prepare_shared(shared, execution)
        return shared

    def _prepare_shared(self, shared: SharedDirectory, execution: Row) -> None:
        """Write the WorkingDirectory's namespace files and inputFiles: all of them or none."""
        ctx = self._context_of(shared, execution)
        namespace_files = workdir.namespace_files(ctx, shared.task.namespaceFiles)
        input_files = workdir.input_files(ctx, shared.task.inputFiles)
        staging = shared.path.with_name(f".{shared.path.name}-{uuid.uuid4().hex[:8]}")
        staging.mkdir(parents=True)
        try:
            workdir.write_files(staging, namespace_files, "namespaceFiles")
            workdir.write_files(staging, input_files, "inputFiles")
            with contextlib.suppress(OSError):  # another child prepared it meanwhile
                staging.rename(shared.path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def collect_shared(self, shared: SharedDirectory, execution: Row) -> None:
        """Keep the WorkingDirectory's `outputFiles` found so far as that task's outputs.

        Collected after each child, so the last child's files are there when it ends.
        """
        if shared.task.outputFiles is None:
            return
        ctx = self._context_of(shared, execution)
        patterns = text_list(ctx, shared.task.outputFiles, "outputFiles")
        workdir.check_patterns(patterns)
        root = shared.path.resolve()
        kept: dict[str, str] = {}
        for pattern in patterns:
            for file in sorted(shared.path.glob(pattern.strip())):
                name = file.relative_to(shared.path).as_posix()
                if file.is_file() and file.resolve().is_relative_to(root):
                    kept[name] = self.storage.put_file(ctx.output_key(name), file)
        if not kept:
            return
        with self.store.write() as tx:
            current = tx.task_run(shared.run["id"]) or shared.run
            outputs = current.get("outputs") or {}
            files = {**(outputs.get("outputFiles") or {}), **kept}
            tx.update_task_run(shared.run["id"], {"outputs": {**outputs, "outputFiles": files}})

    def _context_of(self, shared: SharedDirectory, execution: Row) -> RunContext:
        runner = self._runner_for(shared.task)
        return RunContext(self, shared.run, execution, shared.task, threading.Event(), runner)

    def _enclosing_working_directory(self, run: Row) -> tuple[Row, WorkingDirectory] | None:
        if run.get("parent_id") is None:
            return None
        with self.store.read() as tx:
            parent_id = run["parent_id"]
            execution = self._execution(run["execution_id"])
            while parent_id is not None:
                parent = tx.task_run(parent_id)
                if parent is None:
                    return None
                task = self.flows.task(
                    execution["namespace"],
                    execution["flow_id"],
                    execution["flow_revision"],
                    parent["task_id"],
                )
                if isinstance(task, WorkingDirectory):
                    return parent, task
                parent_id = parent["parent_id"]
        return None

    def namespace_files(self, namespace: str, commit: str | None) -> Mapping[str, bytes]:
        if self._namespace_files is None:
            return {}
        return self._namespace_files(namespace, commit)

    # -- serving -------------------------------------------------------------------------
    def serve(self, stop: threading.Event) -> None:
        """Run task runs until `stop` is set; between them wait for work, not spin."""
        self.stopping = stop
        seen = self.executor.work.generation
        while not stop.is_set():
            try:
                if self.run_once():
                    continue
            except Exception:
                log.exception("worker step failed", extra={"worker": self.name})
                stop.wait(1.0)
                continue
            seen = self.executor.work.wait(self._idle_wait(), seen)
        try:
            self.hand_back_claimed()
        except Exception:
            log.exception("cannot hand back a claimed task run", extra={"worker": self.name})

    def _idle_wait(self) -> float:
        due = self.store.next_claimable()
        if due is None:
            return self.settings.idle_poll_seconds
        return max(0.0, min(self.settings.idle_poll_seconds, due - self.clock()))


class WorkerPool:
    """Worker threads plus the heartbeat that renews their leases and passes on kills."""

    def __init__(self, workers: list[Worker], heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
        self.workers = workers
        self.heartbeat_seconds = heartbeat_seconds
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for worker in self.workers:
            thread = threading.Thread(
                target=worker.serve, args=(self.stop_event,), name=worker.name, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        beat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        beat.start()
        self._threads.append(beat)

    def _heartbeat(self) -> None:
        while not self.stop_event.wait(self.heartbeat_seconds):
            self.beat()

    def beat(self) -> None:
        """Renew leases; cancel what was lost or killed."""
        for worker in self.workers:
            running = dict(worker.running)
            if not running:
                continue
            try:
                until = worker.clock() + worker.settings.lease_seconds
                lost = worker.store.renew_leases(worker.name, running, until)
                killed = worker.store.kill_requested(running)
            except Exception:
                log.exception("lease renewal failed", extra={"worker": worker.name})
                continue
            for run_id in lost:
                if run_id in running:  # someone else's now: not one more line from us
                    worker.logs.close((run_id, running[run_id].run["attempt"]))
            for run_id in lost | killed:
                if run_id in running:
                    running[run_id].cancel.set()

    def holds(self, run: Row) -> bool:
        """Whether a worker of this pool is running `run` (its lease is as good as renewed).

        The executor asks before it takes an expired lease away: a worker of this process
        that is alive decides its task's end, even when the store kept its heartbeat from
        renewing the lease for a while.
        """
        for worker in self.workers:
            if worker.name == run.get("lease_owner"):
                running = worker.running.get(run["id"])
                return running is not None and running.run["attempt"] == run["attempt"]
        return False

    def cancel_execution(self, execution_id: str) -> None:
        """In-process shortcut for a kill: stop its running task runs now."""
        for worker in self.workers:
            for running in list(worker.running.values()):
                if running.run["execution_id"] == execution_id:
                    running.cancel.set()

    def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """No new claims; running task runs get `grace` seconds, then are handed back.

        A task run handed back keeps its attempt count (DESIGN: a shutdown does not use
        an attempt); another worker, or this daemon after a restart, runs it again.
        """
        self.stop_event.set()
        for worker in self.workers:
            worker.executor.work.notify()
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for worker in self.workers:
            for running in list(worker.running.values()):
                running.release = True
                running.cancel.set()
        for thread in self._threads:
            thread.join(timeout=SHUTDOWN_RELEASE_SECONDS)
