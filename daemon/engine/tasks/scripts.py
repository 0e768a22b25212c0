"""Script tasks: shell, python and node, as a script body or a list of commands.

Every script task runs the same way. Its working directory gets the namespace files
(when `namespaceFiles` is on), then `inputFiles`, then the script body as
`script.sh` / `script.py` / `script.js`. One shell line is built:

    set -e
    <beforeCommands>
    <commands, or: /bin/sh script.sh | python3 script.py | node script.js>

and run as `["/bin/sh", "-c", line]` (`interpreter` replaces the first two), so the
first failing command fails the task, as in Kestra. Nothing a flow renders is pasted
into that line by us: values reach the script as `env` variables or files; only the
user's own commands are their text. The command's lines become log lines (stdout
INFO, stderr WARN), except protocol lines (`headwater.daemon.engine.protocol`).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headwater.daemon.engine import protocol
from headwater.daemon.engine.states import State
from headwater.daemon.engine.taskapi import TaskContext, TaskFailed, TaskResult, implements
from headwater.daemon.engine.tasks import workdir
from headwater.daemon.engine.tasks.properties import (
    Span,
    duration,
    flag,
    model_of,
    text_list,
    text_map,
)
from headwater.daemon.flow.tasks.scripts import ScriptBodyTask, ScriptTask
from headwater.daemon.flow.tasks.taskrunners import DockerRunner
from headwater.runners.base import (
    ContainerOptions,
    Limits,
    PullPolicy,
    RunResult,
    RunSpec,
    Stream,
)

DEFAULT_INTERPRETER = ("/bin/sh", "-c")  # Kestra's default for every script task
SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh"})  # interpreters `set -e` suits
LAST_STDERR_CHARS = 500  # how much of the last stderr line a failure message quotes
WORKING_DIR_VARIABLE = "WORKING_DIR"  # Kestra's name for the working directory in `env`


@dataclass(frozen=True)
class Language:
    """What differs between shell, python and node tasks."""

    name: str
    script_file: str
    """File the body of a Script task is written to."""
    program: str | None
    """Runs the script file (None: the interpreter's shell itself)."""


# A container runner picks the image of a task that names none by the language's name.
SHELL = Language("shell", "script.sh", None)
PYTHON = Language("python", "script.py", "python3")
NODE = Language("node", "script.js", "node")


@implements("scripts.shell.Commands", "scripts.shell.Script")
def shell(ctx: TaskContext) -> TaskResult:
    return run_script(ctx, SHELL)


@implements("scripts.python.Commands", "scripts.python.Script")
def python(ctx: TaskContext) -> TaskResult:
    return run_script(ctx, PYTHON)


@implements("scripts.node.Commands", "scripts.node.Script")
def node(ctx: TaskContext) -> TaskResult:
    return run_script(ctx, NODE)


def run_script(ctx: TaskContext, language: Language) -> TaskResult:
    """Prepare the working directory, run the command, collect what it left."""
    task = model_of(ctx, ScriptTask)
    plan = _Plan.of(ctx, task, language)
    plan.write_files()
    console = Console(ctx)
    result = ctx.runner.run(plan.spec(), console.on_line, ctx.cancel)
    if result.leftovers:
        ctx.log("WARN", leftovers_message(result.leftovers))
    if console.fatal is not None:
        ctx.cancel.clear()  # it was set to stop the command, not by a kill
        return TaskResult(State.FAILED, {"exitCode": result.exit_code}, error=console.fatal)
    failure = failure_of(result, console.last_stderr, plan.timeout)
    files: dict[str, str] = {}
    if result.error is None and not result.killed:
        try:
            files = workdir.collect(ctx, plan.workdir, plan.output_files)
        except workdir.OutputFileError as exc:
            failure = failure or str(exc)
    outputs = {"exitCode": result.exit_code, "vars": console.vars, "outputFiles": files}
    if failure is not None:
        return TaskResult(State.FAILED, outputs, console.metrics, error=failure)
    warn = plan.warning_on_stderr and console.stderr_lines > 0
    return TaskResult(State.WARNING if warn else State.SUCCESS, outputs, console.metrics)


def leftovers_message(count: int) -> str:
    """The task's log line when its command left processes running (they were ended)."""
    what = "1 process" if count == 1 else f"{count} processes"
    return (
        f"ended {what} that the command left running: nothing a task starts outlives it "
        "(wait for background processes before the command ends)"
    )


def failure_of(result: RunResult, last_stderr: str | None, timeout: Span | None) -> str | None:
    """Why the run failed, in a user's words; None when it succeeded."""
    if result.error is not None:
        return result.error
    if result.timed_out:
        return f"timed out after {timeout.text}" if timeout else "timed out"
    if result.oom_killed:
        return "out of memory (killed)"
    if result.killed:
        return "killed"
    if result.exit_code == 0:
        return None
    what = (
        "command was ended by a signal"
        if result.exit_code is None
        else f"command exited with code {result.exit_code}"
    )
    if last_stderr:
        return f"{what}; last line on stderr: {last_stderr[:LAST_STDERR_CHARS]}"
    return what


# -- preparing the run ----------------------------------------------------------------


@dataclass
class _Plan:
    """Everything rendered and checked before any file is written or process started."""

    workdir: Path
    command: list[str]
    env: dict[str, str]
    timeout: Span | None
    image: str | None
    language: str
    limits: Limits
    container: ContainerOptions
    labels: dict[str, str]
    output_files: list[str]
    keep_files: bool
    warning_on_stderr: bool
    namespace_files: dict[str, bytes] = field(default_factory=dict)
    input_files: dict[str, bytes] = field(default_factory=dict)
    script: str | None = None
    script_file: str = ""

    @classmethod
    def of(cls, ctx: TaskContext, task: ScriptTask, language: Language) -> _Plan:
        directory = ctx.working_directory()
        interpreter = text_list(ctx, task.interpreter, "interpreter") or list(DEFAULT_INTERPRETER)
        output_files = text_list(ctx, task.outputFiles, "outputFiles")
        workdir.check_patterns(output_files)
        namespace_files = workdir.namespace_files(ctx, task.namespaceFiles)
        input_files = workdir.input_files(ctx, task.inputFiles)
        taken = set(namespace_files) | set(input_files)
        script_file = _script_file(language, task.id, taken)
        script = ctx.render_text(task.script) if isinstance(task, ScriptBodyTask) else None
        main = (
            [_script_line(language, interpreter, script_file)]
            if script is not None
            else text_list(ctx, getattr(task, "commands", None), "commands")
        )
        before = text_list(ctx, task.beforeCommands, "beforeCommands")
        return cls(
            workdir=directory,
            command=_command(interpreter, language, [*before, *main]),
            env=_environment(ctx, task, directory),
            timeout=duration(ctx, task.timeout, "timeout"),
            image=_image(ctx, task),
            language=language.name,
            limits=_limits(ctx, task.taskRunner),
            container=_container_options(ctx, task.taskRunner),
            labels={
                "headwater.execution": ctx.execution_id,
                "headwater.taskrun": ctx.task_run_id,
                "headwater.attempt": str(ctx.attempt),
            },
            output_files=output_files,
            keep_files=bool(output_files) or ctx.working_directory_is_shared(),
            warning_on_stderr=flag(ctx, task.warningOnStdErr, "warningOnStdErr"),
            namespace_files=namespace_files,
            input_files=input_files,
            script=script,
            script_file=script_file,
        )

    def write_files(self) -> None:
        """Namespace files first, then inputFiles (which win), then the script body."""
        workdir.write_files(self.workdir, self.namespace_files, "namespaceFiles")
        workdir.write_files(self.workdir, self.input_files, "inputFiles")
        if self.script is not None:
            workdir.write_files(
                self.workdir, {self.script_file: self.script.encode("utf-8")}, "script"
            )

    def spec(self) -> RunSpec:
        return RunSpec(
            command=self.command,
            workdir=self.workdir,
            env=self.env,
            timeout=None if self.timeout is None else self.timeout.seconds,
            image=self.image,
            language=self.language,
            limits=self.limits,
            container=self.container,
            labels=self.labels,
            keep_files=self.keep_files,
        )


def _script_file(language: Language, task_id: str, taken: set[str]) -> str:
    """`script.py`, unless namespace or input files already use that name."""
    if language.script_file not in taken:
        return language.script_file
    stem, _, extension = language.script_file.rpartition(".")
    return f"{stem}-{task_id}.{extension}"


def _script_line(language: Language, interpreter: list[str], script_file: str) -> str:
    program = language.program or interpreter[0]
    return f"{shlex.quote(program)} {shlex.quote(script_file)}"


def _command(interpreter: list[str], language: Language, lines: list[str]) -> list[str]:
    """The argv: the interpreter and one script of `lines` (with `set -e` for a shell)."""
    if os.path.basename(interpreter[0]) in SHELLS:
        prelude = ["set -e"]
        if language is PYTHON:
            prelude.append(_python_path_line())
        lines = [*prelude, *lines]
    return [*interpreter, "\n".join(lines)]


def _python_path_line() -> str:
    """Put the folder of the Python that runs Headwater first on PATH, where it exists.

    So `python` and `python3` work in commands on a machine without a `python` on PATH.
    The test in the shell (rather than a PATH in `env`) keeps a container's own PATH
    intact: the folder does not exist there.
    """
    folder = shlex.quote(os.path.dirname(sys.executable))
    return f'if [ -d {folder} ]; then PATH={folder}:"$PATH"; export PATH; fi'


def _environment(ctx: TaskContext, task: ScriptTask, directory: Path) -> dict[str, str]:
    env = text_map(ctx, task.env, "env")
    for name, value in env.items():
        if not name or "=" in name or "\0" in name:
            raise TaskFailed(f"env: {name!r} is not a valid environment variable name")
        if "\0" in value:
            raise TaskFailed(f"env: the value of {name} holds a NUL character")
    return {**env, WORKING_DIR_VARIABLE: str(directory)}


def _image(ctx: TaskContext, task: ScriptTask) -> str | None:
    """The task's image; None: the runner's default for the language."""
    if task.containerImage is not None:
        return ctx.render_text(task.containerImage).strip() or None
    runner = task.taskRunner
    if isinstance(runner, DockerRunner) and runner.image is not None:
        return ctx.render_text(runner.image).strip() or None
    return None


_MEMORY = re.compile(r"(?i)\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*")
_MEMORY_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _limits(ctx: TaskContext, runner: Any) -> Limits:
    """CPU and memory limits a Docker taskRunner names (a process runner ignores them)."""
    if not isinstance(runner, DockerRunner):
        return Limits()
    cpus: float | None = None
    if runner.cpu is not None:
        text = ctx.render_text(runner.cpu.cpus)
        try:
            cpus = float(text)
        except ValueError:
            raise TaskFailed(f"taskRunner.cpu.cpus must be a number, got {text!r}") from None
    if runner.memory is None:
        return Limits(cpus=cpus)
    memory = _bytes(ctx, runner.memory.memory, "memory")
    swap = _bytes(ctx, runner.memory.memorySwap, "memorySwap")
    return Limits(cpus=cpus, memory_bytes=memory, memory_swap_bytes=swap)


def _bytes(ctx: TaskContext, value: Any, name: str) -> int | None:
    if value is None:
        return None
    text = ctx.render_text(value)
    match = _MEMORY.fullmatch(text)
    if match is None:
        raise TaskFailed(f"taskRunner.memory.{name} must be like 512MB or 1GB, got {text!r}")
    return int(float(match[1]) * _MEMORY_UNITS[match[2].lower()])


def _container_options(ctx: TaskContext, runner: Any) -> ContainerOptions:
    """How a Docker taskRunner wants its container started (checked by the runner)."""
    if not isinstance(runner, DockerRunner):
        return ContainerOptions()
    network = ctx.render_text(runner.networkMode).strip() if runner.networkMode else None
    user = ctx.render_text(runner.user).strip() if runner.user else None
    volumes = tuple(ctx.render_text(volume).strip() for volume in runner.volumes or [])
    entrypoint = (
        tuple(ctx.render_text(part) for part in runner.entryPoint)
        if runner.entryPoint is not None
        else None
    )
    return ContainerOptions(
        pull_policy=_pull_policy(ctx, runner.pullPolicy),
        network_mode=network or None,
        volumes=volumes,
        user=user or None,
        entrypoint=entrypoint,
    )


_PULL_POLICIES: dict[str, PullPolicy] = {
    "ALWAYS": "ALWAYS",
    "IF_NOT_PRESENT": "IF_NOT_PRESENT",
    "NEVER": "NEVER",
}


def _pull_policy(ctx: TaskContext, value: str) -> PullPolicy:
    text = ctx.render_text(value).strip()
    if text not in _PULL_POLICIES:
        raise TaskFailed(
            f"taskRunner.pullPolicy must be ALWAYS, IF_NOT_PRESENT or NEVER, got {text!r}"
        )
    return _PULL_POLICIES[text]


# -- reading what the command prints ---------------------------------------------------


class Console:
    """The sink for the command's lines: log lines, or protocol messages.

    A runner may call `on_line` from more than one thread (one per stream); a lock
    keeps the counts and outputs whole.
    """

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self.vars: dict[str, Any] = {}
        self.metrics: list[dict[str, Any]] = []
        self.stderr_lines = 0
        self.last_stderr: str | None = None
        self.fatal: str | None = None
        """Why the task fails whatever its exit code (a protocol line it cannot keep)."""
        self._lock = threading.Lock()

    def on_line(self, stream: Stream, line: str) -> None:
        with self._lock:
            message = protocol.parse_line(line)
            if message is None:
                self._plain(stream, line)
            else:
                self._message(message)

    def _plain(self, stream: Stream, line: str) -> None:
        if not line.strip():
            return  # blank lines carry nothing and would only pad the log
        if stream == "stderr":
            self.stderr_lines += 1
            self.last_stderr = line.strip()
            self.ctx.log("WARN", line)
        else:
            self.ctx.log("INFO", line)

    def _message(self, message: protocol.Message) -> None:
        if message.fatal is not None:
            if self.fatal is None:
                self.fatal = message.fatal
                self.ctx.cancel.set()  # stop the command now: the task has failed
            return
        self.vars.update(message.outputs)
        self.metrics.extend(message.metrics)
        for level, text in message.logs:
            self.ctx.log(level, text)
        for problem in message.problems:
            self.ctx.log("WARN", f"ignored (part of) a '::{{...}}::' line: {problem}")
