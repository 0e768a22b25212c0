"""What a runnable task's implementation receives and returns.

A runnable task type (`core.log.Log`, `scripts.shell.Commands`, …) is implemented by
one function `run(ctx) -> TaskResult`, registered with `@implements(short_name)`.
The worker builds the `TaskContext`: the task's model, rendering with the execution's
context, logging, cancellation, the runner for commands, working directories, namespace
files and internal storage. Implementations never touch the store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from headwater.daemon.engine.states import State
from headwater.daemon.flow.base import Task
from headwater.runners.base import Runner


class InternalStorage(Protocol):
    """Files kept by Headwater (FILE inputs, output files), addressed by key."""

    def put(self, key: str, data: bytes) -> str:
        """Store `data` under `key`; return its URI (`kestra:///…`)."""
        ...

    def put_file(self, key: str, path: Path) -> str:
        """Store the file at `path` under `key`; return its URI."""
        ...

    def get(self, uri_or_key: str) -> bytes: ...

    def path(self, uri_or_key: str) -> Path:
        """A local path holding the file (the data directory's copy)."""
        ...

    def delete(self, uri_or_key: str) -> None: ...


@dataclass
class TaskResult:
    state: State = State.SUCCESS
    """SUCCESS, WARNING or FAILED (the worker handles retries and allowFailure)."""
    outputs: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    """Why it failed, in words a user reads (the expression and reason, the exit code, …)."""
    labels: dict[str, str] | None = None
    """Labels to add to the execution (core.execution.Labels)."""


class TaskFailed(Exception):
    """Raised by an implementation to fail the attempt with a message (not a bug)."""


class TaskContext(Protocol):
    task: Task
    """The task's model, with unrendered values."""
    execution_id: str
    task_run_id: str
    attempt: int
    namespace: str
    flow_id: str
    cancel: threading.Event
    """Set when the execution is killed or the lease is lost: stop as soon as possible."""
    storage: InternalStorage
    runner: Runner
    """The runner chosen for this task (its taskRunner, or the deployment's default)."""

    def render(self, value: Any) -> Any:
        """Render expressions in `value` (strings, recursively in lists and maps).

        A string that is exactly one `{{ expr }}` keeps the expression's type.
        Raises TaskFailed naming the expression and the reason when rendering fails.
        """
        ...

    def render_text(self, value: Any) -> str:
        """Render to text (lists and maps as JSON)."""
        ...

    def log(self, level: str, message: str) -> None:
        """A log line of this attempt (secrets are masked by the log writer)."""
        ...

    def working_directory(self) -> Path:
        """The attempt's working directory: fresh, or the enclosing WorkingDirectory's."""
        ...

    def working_directory_is_shared(self) -> bool:
        """Whether later tasks use the working directory (an enclosing WorkingDirectory's)."""
        ...

    def namespace_files(
        self, include: list[str] | None = None, exclude: list[str] | None = None
    ) -> Mapping[str, bytes]:
        """The namespace's files (`_files/`) as of the execution's revision, by path."""
        ...

    def output_key(self, name: str) -> str:
        """The internal-storage key for an output file of this attempt."""
        ...


TaskFunction = Callable[[TaskContext], TaskResult]
IMPLEMENTATIONS: dict[str, TaskFunction] = {}


def implements(*short_names: str) -> Callable[[TaskFunction], TaskFunction]:
    """Register `fn` as the implementation of the task types named (short names)."""

    def register(fn: TaskFunction) -> TaskFunction:
        for name in short_names:
            IMPLEMENTATIONS[name] = fn
        return fn

    return register
