"""A TaskContext for tests of task implementations: the seam's second implementation.

It renders with the real expression language, keeps files in a real `LocalStorage`,
records log lines, and runs commands with whatever runner the test hands it (the real
`ProcessRunner` in integration tests, a scripted one in unit tests).
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import headwater.daemon.engine.tasks  # registers the implementations
import headwater.daemon.flow.model  # noqa: F401  (resolves the task models' references)
from headwater.daemon import expressions
from headwater.daemon.engine.context import text_of
from headwater.daemon.engine.taskapi import IMPLEMENTATIONS, TaskFailed, TaskResult
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.flow.base import Task
from headwater.daemon.flow.registry import REGISTRY
from headwater.daemon.storage import LocalStorage
from headwater.runners.base import LineSink, RunResult, RunSpec

VARIABLES: dict[str, Any] = {
    "flow": {"id": "etl", "namespace": "company.team"},
    "execution": {"id": "exec1"},
    "inputs": {"name": "World", "n": 7, "nasty": "$(touch pwned); echo 'x' \"y\" `id`"},
    "outputs": {"extract": {"vars": {"rows": 12}}},
    "vars": {},
}


def make_task(raw: dict[str, Any]) -> Task:
    """The model of a raw task mapping, as the flow parser would give it."""
    entry = REGISTRY.resolve(raw["type"], "task")
    assert entry is not None, raw["type"]
    model = entry.model.model_validate(raw)
    assert isinstance(model, Task)
    return model


@dataclass
class ScriptedRunner:
    """A runner that prints given lines and ends as told, recording the spec it got."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    result: RunResult = field(default_factory=lambda: RunResult(exit_code=0, duration=0.01))
    files: dict[str, str] = field(default_factory=dict)
    """Files the 'command' leaves in the working directory."""
    specs: list[RunSpec] = field(default_factory=list)

    def run(
        self,
        spec: RunSpec,
        on_line: LineSink,
        cancel: threading.Event,
        on_start: Callable[[int], None] | None = None,
    ) -> RunResult:
        self.specs.append(spec)
        for name, content in self.files.items():
            path = spec.workdir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        for stream, line in self.lines:
            on_line(stream, line)  # type: ignore[arg-type]
        return self.result


class FakeContext:
    """Renders with `headwater.daemon.expressions`, records logs, real storage on disk."""

    def __init__(
        self,
        task: Task | dict[str, Any],
        tmp_path: Path,
        runner: Any = None,
        variables: Mapping[str, Any] | None = None,
        namespace_files: Mapping[str, bytes] | None = None,
    ) -> None:
        self.task = make_task(task) if isinstance(task, dict) else task
        self.execution_id = "exec1"
        self.task_run_id = "run1"
        self.attempt = 1
        self.namespace = "company.team"
        self.flow_id = "etl"
        self.cancel = threading.Event()
        self.storage = LocalStorage(tmp_path / "storage")
        self.runner = runner if runner is not None else ScriptedRunner()
        self.variables = dict(VARIABLES if variables is None else variables)
        self.logs: list[tuple[str, str]] = []
        self.workdir = tmp_path / "work"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.shared_workdir = False
        self._namespace_files = dict(namespace_files or {})

    # -- TaskContext

    def render(self, value: Any) -> Any:
        context = expressions.RenderContext(variables=self.variables)
        try:
            return _render(value, context)
        except HeadwaterError as exc:
            raise TaskFailed(str(exc)) from None

    def render_text(self, value: Any) -> str:
        return text_of(self.render(value))

    def log(self, level: str, message: str) -> None:
        self.logs.append((level, message))

    def working_directory(self) -> Path:
        return self.workdir

    def working_directory_is_shared(self) -> bool:
        return self.shared_workdir

    def namespace_files(
        self, include: list[str] | None = None, exclude: list[str] | None = None
    ) -> Mapping[str, bytes]:
        return {
            path: data
            for path, data in self._namespace_files.items()
            if (not include or any(fnmatch.fnmatch(path, p) for p in include))
            and not any(fnmatch.fnmatch(path, p) for p in exclude or [])
        }

    def output_key(self, name: str) -> str:
        return f"company/team/etl/executions/exec1/outputs/run1/{name}"

    # -- for tests

    def run(self) -> TaskResult:
        """Run the registered implementation of the task's type."""
        entry = REGISTRY.resolve(self.task.type, "task")
        assert entry is not None
        return IMPLEMENTATIONS[entry.short](self)

    def lines(self, level: str | None = None) -> list[str]:
        return [message for lvl, message in self.logs if level is None or lvl == level]


def _render(value: Any, context: expressions.RenderContext) -> Any:
    if isinstance(value, str):
        if not expressions.has_expression(value):
            return value
        return expressions.parse(value).evaluate(context)
    if isinstance(value, list):
        return [_render(item, context) for item in value]
    if isinstance(value, dict):
        return {key: _render(item, context) for key, item in value.items()}
    return value
