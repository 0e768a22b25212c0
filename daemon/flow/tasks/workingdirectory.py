"""core.flow.WorkingDirectory: children share one working directory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headwater.daemon.flow.base import Flowable, NamespaceFiles
from headwater.daemon.flow.registry import task
from headwater.daemon.flow.types import TextList, TextMap

if TYPE_CHECKING:
    AnyTask = Any


@task(
    "core.flow.WorkingDirectory", old=["io.kestra.core.tasks.flows.WorkingDirectory"], flowable=True
)
class WorkingDirectory(Flowable):
    """Runs its tasks one after another in one shared working directory."""

    tasks: list[AnyTask]
    """The child tasks."""
    inputFiles: TextMap | None = None
    """Files written into the directory first: path to content."""
    outputFiles: TextList | None = None
    """Glob patterns of files to keep at the end."""
    namespaceFiles: NamespaceFiles | None = None
    """Write the namespace's files into the directory."""
