"""The engine's parts, built once and wired: store, executor, workers, timers, logs.

`Engine(settings)` is what `headwater run` and `headwater up` start. It takes a lock on
its data directory (two engines never share one), brings the database to the current
schema, and on `start()` carries on with whatever a previous process left unfinished:
expired leases are retried or failed by policy, due timers fire.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from headwater.daemon.engine.containers import build_runners, remove_orphans_soon
from headwater.daemon.engine.context import Renderer
from headwater.daemon.engine.control import Control
from headwater.daemon.engine.executor import ExecutionRequest, Executor, owner_name
from headwater.daemon.engine.flows import FlowCache, index_tasks, parse_flow
from headwater.daemon.engine.inputs import (
    InputsRefused,
    UploadedFile,
    resolve_inputs,
    secret_values,
)
from headwater.daemon.engine.logs import LogLimits, LogWriter
from headwater.daemon.engine.sealing import Sealer, load_key
from headwater.daemon.engine.secrets import Masker, Secrets
from headwater.daemon.engine.taskuser import prepare_task_user
from headwater.daemon.engine.worker import NamespaceFiles, Worker, WorkerPool, WorkerSettings
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.expressions import has_expression
from headwater.daemon.flow.inputs import SecretInput
from headwater.daemon.flow.model import Flow
from headwater.daemon.flow.tasks.subflow import Subflow
from headwater.daemon.storage import LocalStorage
from headwater.daemon.store.db import make_engine, sqlite_url
from headwater.daemon.store.migrate import upgrade
from headwater.daemon.store.store import Row, Store, Tx
from headwater.daemon.triggers.flowtrigger import FlowTriggers
from headwater.runners.docker_settings import DockerSettings

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 4  # worker threads in one process
EXECUTOR_POLL_SECONDS = 1.0  # the executor looks for work from other processes this often
# On SQLite the data directory's lock makes this process the store's only writer: every
# change is announced in-process, and the store is looked at this seldom only in case an
# announcement was missed. An idle daemon then wakes a few times a minute, not ten times
# a second (issue 11: an idle daemon used a third of a core).
ALONE_POLL_SECONDS = 15.0
CHECKPOINT_SECONDS = 1.0  # while there are writes, SQLite's WAL is checkpointed this often
LOCK_FILE = "headwater.lock"


class DataDirLocked(HeadwaterError):
    pass


@dataclass
class EngineSettings:
    data_dir: Path
    db_url: str | None = None
    workers: int = DEFAULT_WORKERS
    secrets_file: Path | None = None
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 3.0
    default_runner: str = "process"
    """Where script tasks without a taskRunner run: process or docker."""
    docker: DockerSettings | None = None
    """The Docker runner's settings (default: DOCKER_HOST or the local socket)."""
    log_limits: LogLimits = field(default_factory=LogLimits)
    """How much log one attempt of a task run may store."""
    task_user: str | None = None
    """The user process tasks run as (see `taskuser.py`); None: the daemon's own."""


FlowSource = Callable[[str, str], str | None]
"""(namespace, flow id) -> the source of a flow that is not deployed (local runs)."""


class Engine:
    def __init__(
        self,
        settings: EngineSettings,
        clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
        namespace_files: NamespaceFiles | None = None,
    ) -> None:
        """`environ` is where secrets (`SECRET_*`) and `envs` (`ENV_*`) come from (default:
        this process's); `namespace_files` gives a namespace's files at a commit."""
        self.settings = settings
        self.namespace_files = namespace_files
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_data_dir(settings.data_dir)
        task_user = (
            prepare_task_user(settings.task_user, settings.data_dir) if settings.task_user else None
        )
        self.db = make_engine(settings.db_url or sqlite_url(settings.data_dir))
        upgrade(self.db)
        self.store = Store(self.db)
        self.clock = clock
        self.masker = Masker()
        self.secrets = Secrets(settings.secrets_file, environ)
        self.sealer = Sealer(load_key(settings.data_dir, self.secrets.environ))
        """Seals secret input values before they are stored (`sealing.py`)."""
        self.renderer = Renderer(self.secrets, self.masker, sealer=self.sealer)
        self.flows = FlowCache(self.store)
        self.storage = LocalStorage(settings.data_dir / "storage")
        self.flow_source: FlowSource | None = None
        self.executor = Executor(self.store, self.flows, self.renderer, clock, self._inputs)
        self.store.many_commits = self.executor.timers.notify  # time to checkpoint the WAL
        self.logs = LogWriter(self.store, self.masker, clock, settings.log_limits)
        runners, self.docker = build_runners(
            settings.default_runner,
            settings.docker,
            settings.db_url or str(settings.data_dir.resolve()),
            task_user,
        )
        self.poll_seconds = ALONE_POLL_SECONDS if self.store.sqlite else EXECUTOR_POLL_SECONDS
        worker_settings = WorkerSettings(
            idle_poll_seconds=self.poll_seconds,
            data_dir=settings.data_dir,
            lease_seconds=settings.lease_seconds,
            heartbeat_seconds=settings.heartbeat_seconds,
        )
        tag = uuid.uuid4().hex[:6]  # two engines in one process are two owners
        self.workers = [
            Worker(
                self.store,
                self.executor,
                self.flows,
                self.renderer,
                self.logs,
                self.storage,
                runners,
                worker_settings,
                namespace_files=namespace_files,
                clock=clock,
                name=owner_name(f"{os.getpid()}.{tag}-w{i}"),
            )
            for i in range(settings.workers)
        ]
        self.pool = WorkerPool(self.workers, settings.heartbeat_seconds)
        self.executor.holds = self.pool.holds
        self.control = Control(self.executor, self.pool.cancel_execution)
        """Kill, restart, replay and resume, with the checks people's requests need."""
        self._stop = threading.Event()
        self._executor_thread: threading.Thread | None = None
        self._ended_lock = threading.Condition()
        self._ended_ids: set[str] = set()
        self.executor.ended.append(self._on_ended)
        self.flow_triggers = FlowTriggers(self.executor)
        """Flow triggers fire in the transaction that ends their upstream execution."""
        self.executor.ending.append(self.flow_triggers.on_end)

    # -- flows ---------------------------------------------------------------------------
    def deploy_source(self, source: str, path: str, commit: Row | None = None) -> Row:
        """Make `source` the deployed revision of its flow (a new revision if it changed).

        With a `flow_source` (local runs), the subflows it names are deployed from there too.
        """
        flow = parse_flow(source, path)
        with self.store.write() as tx:
            row = self._deploy(tx, flow, source, commit or {})
        self.flow_triggers.changed()
        if self.flow_source is not None:
            self._deploy_subflows(flow)
        return row

    def _deploy(self, tx: Tx, flow: Flow, source: str, commit: Row) -> Row:
        latest = tx.revision(flow.namespace, flow.id)
        if latest is not None and latest["source"] == source and not latest["deleted"]:
            return latest
        row = {
            "namespace": flow.namespace,
            "flow_id": flow.id,
            "revision": (latest["revision"] + 1) if latest else 1,
            "source": source,
            "created_at": self.clock(),
            "deleted": False,
            **commit,
        }
        tx.insert_revision(row)
        return row

    # -- executions ----------------------------------------------------------------------
    def _inputs(
        self, flow: Flow, given: Mapping[str, Any], execution_id: str, commit: str | None
    ) -> dict[str, Any]:
        def store_file(input_id: str, upload: UploadedFile) -> str:
            key = (
                f"{flow.namespace.replace('.', '/')}/{flow.id}/executions/{execution_id}/"
                f"inputs/{input_id}/{Path(upload.filename).name}"
            )
            return self.storage.put(key, upload.data)

        def read_namespace_file(path: str) -> bytes:  # a FILE default's nsfile:///path
            if self.namespace_files is None:
                raise LookupError(path)
            return self.namespace_files(flow.namespace, commit)[path]

        resolved = resolve_inputs(
            flow.inputs, given, store_file=store_file, read_namespace_file=read_namespace_file
        )
        secret_ids = {i.id for i in flow.inputs or () if isinstance(i, SecretInput)}
        self.masker.add(secret_values(flow.inputs, resolved))

        def secret(name: str, value: str) -> bool:  # declared SECRET, or holds a secret
            return name in secret_ids or self.masker.mask(value) != value

        return self.sealer.seal_inputs(resolved, secret)

    def start_execution(self, request: ExecutionRequest, runs: list[Row] | None = None) -> Row:
        """Create an execution; InputsRefused (nothing created) when its inputs are wrong.
        Given `runs`, see `Executor.create_execution`."""
        if self.flow_source is not None:
            self._deploy_local(request.namespace, request.flow_id)
        return self.executor.create_execution(request, runs)

    def _deploy_local(self, namespace: str, flow_id: str) -> None:
        assert self.flow_source is not None
        source = self.flow_source(namespace, flow_id)
        if source is not None:
            self.deploy_source(source, f"{namespace}/{flow_id}.yaml")

    def _deploy_subflows(self, flow: Flow) -> None:
        """Deploy from `flow_source` the subflows `flow` names, and theirs (local runs)."""
        assert self.flow_source is not None
        wanted, seen = named_subflows(flow), {(flow.namespace, flow.id)}
        while wanted:
            key = wanted.pop()
            source = self.flow_source(*key) if key not in seen else None
            seen.add(key)
            if source is not None:
                child = parse_flow(source, f"{key[0]}/{key[1]}.yaml")
                with self.store.write() as tx:
                    self._deploy(tx, child, source, {})
                wanted += named_subflows(child)

    def kill(self, execution_id: str) -> None:
        self.executor.kill(execution_id)
        self.pool.cancel_execution(execution_id)

    def execution(self, execution_id: str) -> Row | None:
        with self.store.read() as tx:
            return tx.execution(execution_id)

    def task_runs(self, execution_id: str) -> list[Row]:
        with self.store.read() as tx:
            return tx.task_runs(execution_id)

    def unfinished(self, namespace: str, flow_id: str) -> list[Row]:
        """Top-level executions of a flow that have not ended, oldest first."""
        with self.store.read() as tx:
            return tx.unfinished_executions(namespace, flow_id)

    # -- running -------------------------------------------------------------------------
    def remove_orphans_soon(self) -> None:
        """Remove, in the background, containers a stopped Headwater left on the engine."""
        remove_orphans_soon(self.docker, self.store, self.clock)

    def start(self, remove_orphans: bool = True) -> None:
        """Start the workers and the executor. `remove_orphans`: remove the containers a
        stopped process left now, in the background; else the caller calls
        `remove_orphans_soon` when it suits it (the daemon: after its first sync, so the
        Docker SDK's import does not slow its start)."""
        if self.store.sqlite:
            # The data directory's lock says no other process is alive on this store:
            # every lease still held belongs to a process that died. Take them over now
            # rather than waiting for them to expire.
            self.store.expire_all_leases()
        if remove_orphans:
            self.remove_orphans_soon()
        self.logs.start()
        self.pool.start()
        self._executor_thread = threading.Thread(
            target=self._executor_loop, name="executor", daemon=True
        )
        self._executor_thread.start()

    def _executor_loop(self) -> None:
        seen = self.executor.timers.generation
        checkpointed = (self.store.commits, time.monotonic())
        while not self._stop.is_set():
            try:
                self.executor.tick()
                wake = self.store.next_wake()
            except Exception:
                log.exception("executor tick failed; trying again")
                wake = None
            checkpointed = self._checkpoint_if_due(checkpointed)
            timeout = self.poll_seconds
            if self.store.commits != checkpointed[0]:
                timeout = min(timeout, CHECKPOINT_SECONDS)
            if wake is not None:
                timeout = max(0.0, min(timeout, wake - self.clock()))
            paced = self.executor.paced_until
            if paced is not None:
                timeout = max(0.0, min(timeout, paced - time.monotonic()))
            seen = self.executor.timers.wait(timeout, seen)

    def _checkpoint_if_due(self, last: tuple[int, float]) -> tuple[int, float]:
        """Checkpoint SQLite's WAL here, off the commit path, once a second while there are
        writes (see `db.SQLITE_PRAGMAS`); (commits, time) of the last checkpoint."""
        commits, at = last
        now = time.monotonic()
        if self.store.commits == commits or now - at < CHECKPOINT_SECONDS:
            return last
        try:
            self.store.checkpoint()
        except Exception:  # the next one copies what this one did not
            log.warning("WAL checkpoint failed; trying again later", exc_info=True)
        return self.store.commits, now

    def stop(self, grace: float = 30.0) -> None:
        self._stop.set()
        self.executor.timers.notify()
        self.pool.stop(grace)
        if self._executor_thread is not None:
            self._executor_thread.join(timeout=5)
        self.logs.stop()
        self.db.dispose()
        self._lock.close()

    def _on_ended(self, execution: Row) -> None:
        with self._ended_lock:
            self._ended_ids.add(execution["id"])
            self._ended_lock.notify_all()

    def wait(self, execution_id: str, timeout: float | None = None, poll: float = 0.5) -> Row:
        """Block until the execution ends (or `timeout` passes); its last row.

        Ends seen in this process wake it at once; `poll` covers other processes.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            row = self.execution(execution_id)
            if row is None:
                raise HeadwaterError(f"execution {execution_id} does not exist")
            if row["state"] in ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED"):
                return row
            left = poll if deadline is None else min(poll, deadline - time.monotonic())
            if left <= 0:
                return row
            with self._ended_lock:
                if execution_id not in self._ended_ids:
                    self._ended_lock.wait(left)


def named_subflows(flow: Flow) -> list[tuple[str, str]]:
    """(namespace, flow id) of the Subflow tasks that name their flow without expressions."""
    return [
        (task.namespace, task.flowId)
        for task in index_tasks(flow).values()
        if isinstance(task, Subflow)
        and not has_expression(task.namespace)
        and not has_expression(task.flowId)
    ]


def _lock_data_dir(data_dir: Path) -> IO[str]:
    handle = (data_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise DataDirLocked(
            f"the data directory {data_dir} is in use by {owner}; "
            "two Headwater processes never share one"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle


__all__ = ["Engine", "EngineSettings", "ExecutionRequest", "InputsRefused"]
