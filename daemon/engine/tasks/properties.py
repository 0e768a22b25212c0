"""Reading a task's properties, rendered: flags, durations, and lists and maps of text.

Every property may hold expressions (DESIGN.md), so a list property can arrive as a
list, as one expression giving a list, or as a JSON string; these helpers turn each
into the one shape the implementation wants, or fail the task naming the property.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple, TypeVar

from headwater.daemon.engine.context import text_of
from headwater.daemon.engine.taskapi import TaskContext, TaskFailed
from headwater.daemon.flow.base import Task
from headwater.daemon.flow.types import parse_duration

T = TypeVar("T", bound=Task)


class Span(NamedTuple):
    """A rendered ISO-8601 duration: its seconds and its text (for messages)."""

    seconds: float
    text: str


def model_of(ctx: TaskContext, kind: type[T]) -> T:
    """The task's model as `kind`; anything else is a bug in the registry, not a user error."""
    if not isinstance(ctx.task, kind):
        raise TypeError(f"{kind.__name__} implementation called with {type(ctx.task).__name__}")
    return ctx.task


def flag(ctx: TaskContext, value: bool | str, what: str) -> bool:
    """A boolean property: true or false, or an expression rendering to one."""
    if isinstance(value, bool):
        return value
    rendered = ctx.render(value)
    if isinstance(rendered, bool):
        return rendered
    text = text_of(rendered).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise TaskFailed(f"{what} must be true or false, got {text_of(rendered)!r}")


def duration(ctx: TaskContext, value: str | None, what: str) -> Span | None:
    """An ISO-8601 duration property (`PT30S`), rendered; None when not set."""
    if value is None:
        return None
    text = ctx.render_text(value).strip()
    seconds = parse_duration(text)
    if seconds is None:
        raise TaskFailed(f"{what} must be an ISO-8601 duration like PT30S or PT5M, got {text!r}")
    return Span(seconds, text)


def text_list(ctx: TaskContext, value: list[str] | str | None, what: str) -> list[str]:
    """A list of strings: a list, or an expression giving a list or a JSON array."""
    if value is None:
        return []
    rendered = _decoded(ctx.render(value), "[")
    if isinstance(rendered, str):
        return [rendered]
    if isinstance(rendered, list):
        return [text_of(item) for item in rendered]
    raise TaskFailed(f"{what} must be a list of strings, got {_kind(rendered)}")


def text_map(ctx: TaskContext, value: dict[str, Any] | str | None, what: str) -> dict[str, str]:
    """A map of names to strings: a map, or an expression giving a map or a JSON object."""
    if value is None:
        return {}
    rendered = _decoded(ctx.render(value), "{")
    if isinstance(rendered, dict):
        return {str(k): text_of(v) for k, v in rendered.items()}
    raise TaskFailed(f"{what} must be a map of names to strings, got {_kind(rendered)}")


def _decoded(value: Any, opening: str) -> Any:
    """`value`, or the JSON it holds when it is text that starts with `opening`."""
    if isinstance(value, str) and value.lstrip().startswith(opening):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return f"text {value[:40]!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    return type(value).__name__
