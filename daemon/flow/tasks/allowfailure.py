"""core.flow.AllowFailure: a failure inside gives WARNING."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headwater.daemon.flow.base import Flowable
from headwater.daemon.flow.registry import task

if TYPE_CHECKING:
    AnyTask = Any


@task("core.flow.AllowFailure", old=["io.kestra.core.tasks.flows.AllowFailure"], flowable=True)
class AllowFailure(Flowable):
    """Runs its tasks; if one fails, the execution ends in WARNING and goes on."""

    tasks: list[AnyTask]
    """The child tasks."""
