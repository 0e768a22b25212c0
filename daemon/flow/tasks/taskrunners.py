"""Task runners a script task may name in `taskRunner`."""

from __future__ import annotations

from typing import Annotated

from headwater.daemon.flow.base import Model, TaskRunner
from headwater.daemon.flow.registry import runner
from headwater.daemon.flow.types import DynNumber, Text, choice


@runner(
    "core.runner.Process",
    old=["io.kestra.core.models.tasks.runners.types.ProcessTaskRunner"],
)
class ProcessRunner(TaskRunner):
    """Runs the script as a child process of the worker."""


class DockerCpu(Model):
    """CPU limit of a container."""

    cpus: DynNumber
    """Number of CPUs the container may use (e.g. 0.5)."""


class DockerMemory(Model):
    """Memory limit of a container."""

    memory: Text
    """Memory limit, e.g. 512MB or 1GB."""
    memorySwap: Text | None = None
    """Memory plus swap limit."""


@runner("scripts.runner.docker.Docker")
class DockerRunner(TaskRunner):
    """Runs the script in a container on the deployment's Docker engine."""

    image: Text | None = None
    """Image to use (the task's containerImage is the usual place)."""
    pullPolicy: Annotated[str, *choice("ALWAYS", "IF_NOT_PRESENT", "NEVER")] = "IF_NOT_PRESENT"
    """When to pull the image."""
    cpu: DockerCpu | None = None
    """CPU limit."""
    memory: DockerMemory | None = None
    """Memory limit."""
    networkMode: Text | None = None
    """Docker network mode (e.g. none, bridge, host), if the deployment allows it."""
    volumes: list[Text] | None = None
    """Extra bind mounts host:container, only where the deployment allows them."""
    user: Text | None = None
    """User to run as inside the container."""
    entryPoint: list[Text] | None = None
    """Override of the image's entrypoint."""
