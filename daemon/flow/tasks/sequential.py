"""core.flow.Sequential and core.flow.Parallel: children in order, or at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headwater.daemon.flow.base import Flowable
from headwater.daemon.flow.registry import task
from headwater.daemon.flow.types import NonNegativeInt

if TYPE_CHECKING:
    AnyTask = Any


@task("core.flow.Sequential", old=["io.kestra.core.tasks.flows.Sequential"], flowable=True)
class Sequential(Flowable):
    """Runs its tasks one after another."""

    tasks: list[AnyTask]
    """The child tasks."""


@task("core.flow.Parallel", old=["io.kestra.core.tasks.flows.Parallel"], flowable=True)
class Parallel(Flowable):
    """Runs its tasks at the same time."""

    tasks: list[AnyTask]
    """The child tasks."""
    concurrent: NonNegativeInt = 0
    """How many children run at once; 0 means no limit."""
