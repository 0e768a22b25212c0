"""The runner interface: a plain run specification in, a result and log lines out.

Runners know nothing of flows. The daemon turns a script task into a `RunSpec` (the
command, its environment and working directory, limits), hands it to a runner, and
reads the lines the command prints as they come.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

Stream = Literal["stdout", "stderr"]
LineSink = Callable[[Stream, str], None]
"""Called once per line the command prints, as it prints it (without the newline)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits; the process runner enforces only the time limit."""

    cpus: float | None = None
    memory_bytes: int | None = None
    memory_swap_bytes: int | None = None
    """Memory plus swap (containers); None: no swap beyond `memory_bytes`."""


PullPolicy = Literal["ALWAYS", "IF_NOT_PRESENT", "NEVER"]


@dataclass(frozen=True)
class ContainerOptions:
    """How a container runner starts the container; the process runner ignores them."""

    pull_policy: PullPolicy = "IF_NOT_PRESENT"
    network_mode: str | None = None
    """None: the deployment's default (bridge where containers may use the network)."""
    volumes: tuple[str, ...] = ()
    """Extra bind mounts `host:container[:ro]`, checked against what the deployment allows."""
    user: str | None = None
    entrypoint: tuple[str, ...] | None = None
    """None: no entrypoint (the image's own is cleared), so `command` runs as given."""


@dataclass(frozen=True)
class RunSpec:
    """Everything a runner needs to run one command once."""

    command: list[str]
    """argv; the runner never passes it through a shell itself."""
    workdir: Path
    """An existing directory; input files are already written in."""
    env: dict[str, str] = field(default_factory=dict)
    """Variables the task sets; the runner adds a scrubbed copy of its own environment."""
    timeout: float | None = None
    """Seconds before the command is stopped and the run reported as timed out."""
    image: str | None = None
    """Container image (container runners only); None: the runner's default for `language`."""
    language: str | None = None
    """What the command runs (shell, python, node): picks a container runner's default image."""
    limits: Limits = Limits()
    container: ContainerOptions = ContainerOptions()
    labels: dict[str, str] = field(default_factory=dict)
    """Labels naming the execution and task run (container runners put them on the container)."""
    keep_files: bool = True
    """Whether what the command leaves in `workdir` is used afterwards (output files, a
    shared working directory): a container runner copies it back only then."""


@dataclass(frozen=True)
class RunResult:
    exit_code: int | None
    """The command's exit code; None when it never started or was killed by a signal."""
    duration: float
    """Seconds from start to end."""
    timed_out: bool = False
    killed: bool = False
    """Stopped because `cancel` was set."""
    oom_killed: bool = False
    error: str | None = None
    """Why the command could not run at all (not found, not executable, image missing, …)."""
    leftovers: int = 0
    """Processes the command left running when its main process ended, which the runner
    then ended (background processes never outlive their run)."""

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.killed or self.error)


class Runner(Protocol):
    def run(
        self,
        spec: RunSpec,
        on_line: LineSink,
        cancel: threading.Event,
        on_start: Callable[[int], None] | None = None,
    ) -> RunResult:
        """Run `spec` to its end; `on_start` receives the process group id once started.

        Setting `cancel` stops the command (TERM to its whole process group, then KILL
        after a grace period) and the result says `killed`.
        """
        ...
