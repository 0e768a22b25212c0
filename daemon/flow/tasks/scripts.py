"""Script tasks: shell, python and node, as a script body or a list of commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headwater.daemon.flow.base import NamespaceFiles, Task
from headwater.daemon.flow.registry import task
from headwater.daemon.flow.types import DynBool, Text, TextList, TextMap

if TYPE_CHECKING:
    AnyRunner = Any


class ScriptTask(Task):
    """Properties every script task has."""

    env: TextMap | None = None
    """Environment variables of the script."""
    beforeCommands: TextList | None = None
    """Commands run before the script, in the same shell."""
    inputFiles: TextMap | None = None
    """Files written into the working directory: path to content."""
    outputFiles: TextList | None = None
    """Glob patterns of files to keep after the run (`outputs.<id>.outputFiles`)."""
    namespaceFiles: NamespaceFiles | None = None
    """Write the namespace's files (from `_files/`) into the working directory."""
    taskRunner: AnyRunner | None = None
    """Where the script runs: core.runner.Process or scripts.runner.docker.Docker."""
    containerImage: Text | None = None
    """Image for a container runner."""
    interpreter: TextList | None = None
    """Interpreter command, e.g. ['/bin/sh', '-c']."""
    warningOnStdErr: DynBool = False
    """End in WARNING when the script wrote to stderr."""


class CommandsTask(ScriptTask):
    commands: TextList
    """Commands to run, one after another; the first that fails fails the task."""

    @classmethod
    def check(cls, raw: dict[str, Any], path: Any, report: Any) -> None:
        if raw.get("commands") == []:
            report((*path, "commands"), "'commands' is empty: give at least one command")


class ScriptBodyTask(ScriptTask):
    script: Text
    """The script's source."""


@task("scripts.shell.Commands")
class ShellCommands(CommandsTask):
    """Runs shell commands."""


@task("scripts.shell.Script")
class ShellScript(ScriptBodyTask):
    """Runs a shell script."""


@task("scripts.python.Commands")
class PythonCommands(CommandsTask):
    """Runs commands with Python available (e.g. `python main.py`)."""


@task("scripts.python.Script")
class PythonScript(ScriptBodyTask):
    """Runs a Python script."""


@task("scripts.node.Commands")
class NodeCommands(CommandsTask):
    """Runs commands with Node.js available."""


@task("scripts.node.Script")
class NodeScript(ScriptBodyTask):
    """Runs a Node.js script."""
