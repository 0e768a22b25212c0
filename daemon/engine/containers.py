"""The engine's runners, and the containers a killed process left behind.

A script task runs where its `taskRunner` says (`core.runner.Process`,
`scripts.runner.docker.Docker`), else on the deployment's default runner. Every
container carries the labels of its execution, task run and attempt, and the
`headwater.owner` of this store, so a restarted engine can tell its own leftovers
from the containers of anyone else on the same Docker engine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from headwater.daemon.expressions import has_expression
from headwater.daemon.flow.registry import REGISTRY
from headwater.daemon.reconcile import DeploymentCheck
from headwater.daemon.store.store import Store
from headwater.runners.base import Runner
from headwater.runners.docker import LABEL_ATTEMPT, LABEL_TASK_RUN, DockerRunner
from headwater.runners.docker_settings import ContainerRefused, DockerSettings
from headwater.runners.docker_volumes import check_volumes
from headwater.runners.process import ProcessRunner
from headwater.runners.users import TaskUser

log = logging.getLogger(__name__)

PROCESS = "core.runner.Process"  # registry short names of the task runners
DOCKER = "scripts.runner.docker.Docker"
DEFAULT_RUNNERS = {"process": PROCESS, "docker": DOCKER}  # the setting's words


def build_runners(
    default: str, docker: DockerSettings | None, store_id: str, task_user: TaskUser | None = None
) -> tuple[dict[str, Runner], DockerRunner]:
    """The runners by registry name (plus "default"), and the Docker runner itself;
    process tasks run as `task_user` when one is given.

    The Docker runner connects on first use: an engine without Docker starts, and only
    its container tasks fail (saying the engine cannot be reached).
    """
    if default not in DEFAULT_RUNNERS:
        raise ValueError(f"default runner must be process or docker, not {default!r}")
    settings = dataclasses.replace(docker or DockerSettings(), owner=owner_label(store_id))
    container = DockerRunner(settings)
    runners: dict[str, Runner] = {PROCESS: ProcessRunner(task_user=task_user), DOCKER: container}
    runners["default"] = runners[DEFAULT_RUNNERS[default]]
    return runners, container


def deployment_check(settings: DockerSettings) -> DeploymentCheck:
    """The deploy-time check of Docker taskRunners: volumes outside the directories the
    deployment allows or through a symbolic link, network modes it refuses. A commit with
    such a flow is refused; values with expressions are checked when the task runs (as
    every value is), and every volume is checked again then (its files may have changed)."""
    runner = DockerRunner(settings)  # connects on first use only: never here

    def check(raw: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for path, spec in _docker_runners(raw, ()):
            volumes = spec.get("volumes")
            for index, volume in enumerate(volumes if isinstance(volumes, list) else []):
                if isinstance(volume, str) and not has_expression(volume):
                    try:
                        check_volumes([volume], settings.allowed_volumes)
                    except ContainerRefused as exc:
                        problems.append(((*path, "volumes", index), str(exc)))
            mode = spec.get("networkMode")
            if isinstance(mode, str) and not has_expression(mode):
                try:
                    runner.network_mode(mode.strip())
                except ContainerRefused as exc:
                    problems.append(((*path, "networkMode"), str(exc)))
        return problems

    return check


def _docker_runners(
    value: Any, path: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], dict[str, Any]]]:
    """(path, mapping) of every Docker `taskRunner` in a raw flow, however deeply nested."""
    if isinstance(value, dict):
        runner = value.get("taskRunner")
        if isinstance(runner, dict) and isinstance(runner.get("type"), str):
            entry = REGISTRY.resolve(runner["type"], "runner")
            if entry is not None and entry.short == DOCKER:
                yield (*path, "taskRunner"), runner
        for key, item in value.items():
            yield from _docker_runners(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _docker_runners(item, (*path, index))


def all_of(*checks: DeploymentCheck) -> DeploymentCheck:
    """One deployment check made of several: every problem of each."""
    return lambda raw: [problem for check in checks for problem in check(raw)]


def owner_label(store_id: str) -> str:
    """The `headwater.owner` label of a store (a hash: no paths or URLs on containers)."""
    return hashlib.sha256(store_id.encode()).hexdigest()[:16]


def attempt_is_live(
    store: Store, clock: Callable[[], float]
) -> Callable[[Mapping[str, str]], bool]:
    """Whether the attempt a container's labels name runs now: RUNNING, that very
    attempt, under a lease that has not expired."""

    def is_live(labels: Mapping[str, str]) -> bool:
        with store.read() as tx:
            run = tx.task_run(labels.get(LABEL_TASK_RUN, ""))
        if run is None or run["state"] != "RUNNING":
            return False
        if str(run["attempt"]) != labels.get(LABEL_ATTEMPT):
            return False
        expires = run.get("lease_expires")
        return expires is not None and expires > clock()

    return is_live


def remove_orphans_soon(runner: DockerRunner, store: Store, clock: Callable[[], float]) -> None:
    """Remove leftover containers in the background (an engine starts without waiting).

    Safe beside running workers: a container they start meanwhile names a live attempt.
    """

    def remove() -> None:
        try:
            removed = runner.remove_orphans(attempt_is_live(store, clock))
        except Exception as exc:  # no Docker engine here: then no containers were left either
            log.debug("no leftover containers removed: %s", exc)
            return
        if removed:
            log.warning("removed %d container(s) left by a stopped Headwater", removed)

    threading.Thread(target=remove, name="docker-orphans", daemon=True).start()
