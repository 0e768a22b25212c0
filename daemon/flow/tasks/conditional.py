"""core.flow.If and core.flow.Switch: branches chosen at run time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from headwater.daemon.flow.base import Flowable
from headwater.daemon.flow.registry import task
from headwater.daemon.flow.types import Text

if TYPE_CHECKING:
    AnyTask = Any


@task("core.flow.If", old=["io.kestra.core.tasks.flows.If"], flowable=True)
class If(Flowable):
    """Runs `then` when the condition renders truthy, `else` otherwise."""

    task_lists: ClassVar[tuple[str, ...]] = ("then", "else", "errors")

    condition: Text
    """An expression; truthy runs `then`, otherwise `else`."""
    then: list[AnyTask]
    """Tasks run when the condition holds."""
    else_: list[AnyTask] | None = Field(default=None, alias="else")
    """Tasks run when it does not."""


@task("core.flow.Switch", old=["io.kestra.core.tasks.flows.Switch"], flowable=True)
class Switch(Flowable):
    """Runs the tasks of the case equal to the rendered `value`, or `defaults`."""

    value: Text
    """An expression whose rendered text chooses the case."""
    cases: dict[str, list[AnyTask]] | None = None
    """Case value to the tasks to run."""
    defaults: list[AnyTask] | None = None
    """Tasks run when no case matches."""

    @classmethod
    def child_lists(cls, raw: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
        cases = raw.get("cases")
        if isinstance(cases, dict):
            for key, tasks in cases.items():
                yield ("cases", key), tasks
        for name in ("defaults", "errors"):
            if name in raw:
                yield (name,), raw[name]

    @classmethod
    def check(cls, raw: dict[str, Any], path: Any, report: Any) -> None:
        if not raw.get("cases") and not raw.get("defaults"):
            report(path, "a Switch needs 'cases' or 'defaults': it has nothing to run")
