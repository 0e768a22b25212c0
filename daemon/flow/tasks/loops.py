"""Loops: core.flow.ForEach and the older EachSequential and EachParallel."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from headwater.daemon.flow.base import Flowable
from headwater.daemon.flow.registry import task
from headwater.daemon.flow.types import AnyValue, NonNegativeInt, is_expression

if TYPE_CHECKING:
    AnyTask = Any


def _check_values(raw: dict[str, Any], name: str, path: Any, report: Any) -> None:
    values = raw.get(name)
    if isinstance(values, str) and not is_expression(values):
        try:
            parsed = json.loads(values)
        except ValueError:
            parsed = None
        if not isinstance(parsed, list):
            report((*path, name), f"'{name}' must be a list, a JSON array or an expression")
    elif values is not None and not isinstance(values, list | str):
        report((*path, name), f"'{name}' must be a list, a JSON array or an expression")


@task("core.flow.ForEach", old=["io.kestra.core.tasks.flows.ForEach"], flowable=True)
class ForEach(Flowable):
    """Runs its tasks once per value; `{{ taskrun.value }}` is the current one."""

    values: AnyValue
    """A list, a JSON array string, or an expression giving one."""
    concurrencyLimit: NonNegativeInt = 1
    """How many values run at once; 0 means no limit."""
    tasks: list[AnyTask]
    """The tasks to run for each value."""

    @classmethod
    def check(cls, raw: dict[str, Any], path: Any, report: Any) -> None:
        _check_values(raw, "values", path, report)


@task("core.flow.EachSequential", old=["io.kestra.core.tasks.flows.EachSequential"], flowable=True)
class EachSequential(Flowable):
    """Older ForEach: one value after another."""

    value: AnyValue
    """A list, a JSON array string, or an expression giving one."""
    tasks: list[AnyTask]
    """The tasks to run for each value."""

    @classmethod
    def check(cls, raw: dict[str, Any], path: Any, report: Any) -> None:
        _check_values(raw, "value", path, report)


@task("core.flow.EachParallel", old=["io.kestra.core.tasks.flows.EachParallel"], flowable=True)
class EachParallel(Flowable):
    """Older ForEach: values at the same time."""

    value: AnyValue
    """A list, a JSON array string, or an expression giving one."""
    concurrent: NonNegativeInt = 0
    """How many values run at once; 0 means no limit."""
    tasks: list[AnyTask]
    """The tasks to run for each value."""

    @classmethod
    def check(cls, raw: dict[str, Any], path: Any, report: Any) -> None:
        _check_values(raw, "value", path, report)
