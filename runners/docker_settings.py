"""What an operator decides for the Docker runner's containers (docs/runners.md), and the
error of a run that asks for more.

Apart from `headwater.runners.docker` so that reading settings does not import the
`docker` SDK (about 70 ms).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

DEFAULT_IMAGES: Mapping[str, str] = {
    "shell": "ubuntu",
    "python": "python:3.11-slim",
    "node": "node",
}
"""Image of a script task that names none, by language (Kestra's defaults)."""
KILL_GRACE_SECONDS = 5.0
"""Seconds between TERM and KILL when a container is stopped (timeout, kill)."""
FileHandling = Literal["copy", "mount"]


class ContainerRefused(Exception):
    """The run asks for something the deployment does not allow (a volume, the network)."""


@dataclass(frozen=True)
class DockerSettings:
    """What the operator decides for every container (docs/runners.md)."""

    host: str | None = None
    """Engine URL (unix:///var/run/docker.sock, tcp://…); None: DOCKER_HOST or the default."""
    images: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_IMAGES))
    """Default image by language, for tasks that name none."""
    allowed_volumes: tuple[Path, ...] = ()
    """Host directories a task's `volumes` may mount (and what is below them); none: no volumes."""
    network: bool = True
    """Whether containers may use the network; False forces networkMode none."""
    max_containers: int = 4
    """Containers this process runs at once; more wait for a slot (while their lease is kept)."""
    files: FileHandling = "copy"
    """How the working directory reaches the container: copied through the API, or mounted."""
    owner: str = "headwater"
    """Value of the `headwater.owner` label: which deployment (store) a container belongs to."""
    kill_grace: float = KILL_GRACE_SECONDS
