"""core.log.Log and core.debug.Echo: lines in the execution's logs."""

from __future__ import annotations

from headwater.daemon.engine.protocol import LOG_LEVELS, log_level
from headwater.daemon.engine.taskapi import TaskContext, TaskFailed, TaskResult, implements
from headwater.daemon.engine.tasks.properties import model_of
from headwater.daemon.flow.tasks.log import Echo, Log


@implements("core.log.Log")
def log(ctx: TaskContext) -> TaskResult:
    """Log `message` (each item of a list on its own line) at `level`."""
    task = model_of(ctx, Log)
    write(ctx, task.level, task.message)
    return TaskResult()


@implements("core.debug.Echo")
def echo(ctx: TaskContext) -> TaskResult:
    """Log `format` (or, as Log does, `message`) at `level`."""
    task = model_of(ctx, Echo)
    message = task.format if task.format is not None else task.message
    write(ctx, task.level, message if message is not None else "")
    return TaskResult()


def write(ctx: TaskContext, level: str, message: str | list[str]) -> None:
    """Render and log `message` at `level` (an expression, perhaps); a list's items each as
    their own line."""
    rendered = ctx.render_text(level)
    canonical = log_level(rendered)
    if canonical is None:
        raise TaskFailed(f"level must be one of {', '.join(LOG_LEVELS)}, got {rendered!r}")
    items = message if isinstance(message, list) else [message]
    texts = [ctx.render_text(item) for item in items]  # all rendered before any is logged
    for text in texts:
        ctx.log(canonical, text)
