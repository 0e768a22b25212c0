"""core.debug.Return and core.output.OutputValues: rendered values as task outputs."""

from __future__ import annotations

from headwater.daemon.engine.taskapi import TaskContext, TaskResult, implements
from headwater.daemon.engine.tasks.properties import model_of
from headwater.daemon.flow.tasks.debug import Return
from headwater.daemon.flow.tasks.outputs import OutputValues


@implements("core.debug.Return")
def return_(ctx: TaskContext) -> TaskResult:
    """Output `value`: `format` rendered to text (null when there is no format)."""
    task = model_of(ctx, Return)
    value = None if task.format is None else ctx.render_text(task.format)
    return TaskResult(outputs={"value": value})


@implements("core.output.OutputValues")
def output_values(ctx: TaskContext) -> TaskResult:
    """Output `values`: each value rendered, recursively; a lone expression keeps its type."""
    task = model_of(ctx, OutputValues)
    return TaskResult(outputs={"values": ctx.render(task.values)})
