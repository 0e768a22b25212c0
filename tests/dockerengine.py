"""The Docker engine of the Docker runner's tests, and the images they run.

`scripts/services.d/docker` starts the engine and builds the images (no registry is
reachable: they are imported root filesystems). Without an engine the tests skip on a
laptop and fail under CI=true, where nothing may skip for want of a service.
"""

from __future__ import annotations

import os
from typing import Any

import docker
import pytest

BUSYBOX = "headwater-test/busybox:latest"
PYTHON = "headwater-test/python:latest"
IMAGES = (BUSYBOX, PYTHON)
SERVICE = "scripts/services.d/docker"


def docker_api() -> docker.APIClient:
    """A client of the test engine; skips (fails under CI=true) when there is none."""
    try:
        api = docker.APIClient(version="auto", timeout=30, **docker.utils.kwargs_from_env())
        missing = [image for image in IMAGES if not api.images(name=image)]
    except docker.errors.DockerException as exc:
        _unavailable(f"no Docker engine answers ({exc}); run {SERVICE}")
    if missing:
        _unavailable(f"test images missing: {', '.join(missing)}; run {SERVICE}")
    return api


def _unavailable(reason: str) -> Any:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def containers(api: docker.APIClient, label: str) -> list[dict[str, Any]]:
    """Containers (running or not) with `label` (`key` or `key=value`)."""
    return list(api.containers(all=True, filters={"label": label}))


def unavailable_reason() -> str | None:
    """Why Docker tests cannot run here (None: they can); under CI=true, a failure."""
    try:
        docker_api()
    except pytest.skip.Exception as exc:
        return str(exc.msg)
    return None


def alias_image(api: docker.APIClient, image: str, alias: str) -> None:
    """Give a test image the name a flow uses (`python:3.11-slim`), when that name is
    free: no registry is reachable, and a real image of that name is left alone."""
    if not api.images(name=alias):
        repository, _, tag = alias.partition(":")
        api.tag(image, repository, tag or "latest")
