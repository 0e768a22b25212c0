"""core.output.OutputValues: named values as task outputs."""

from __future__ import annotations

from typing import Any

from headwater.daemon.flow.base import Task
from headwater.daemon.flow.registry import task
from headwater.daemon.flow.types import AnyValue


@task("core.output.OutputValues", old=["io.kestra.core.tasks.outputs.OutputValues"])
class OutputValues(Task):
    """Renders each value and exposes it as `outputs.<id>.values.<name>`."""

    values: dict[str, AnyValue]
    """Names and values (expressions are rendered)."""

    @classmethod
    def check(cls, raw: dict[str, Any], path: Any, report: Any) -> None:
        if isinstance(raw.get("values"), dict) and not raw["values"]:
            report((*path, "values"), "'values' is empty: give at least one name and value")
