"""The line protocol scripts use to talk back: `::{"outputs": {...}}::` on a line of its own.

A script task's command prints ordinary lines (they become log lines) and, now and
then, a protocol line: a JSON object between `::` and `::`, alone on its line
(whitespace around it is ignored). Kestra's keys are understood:

- `{"outputs": {"rows": 42}}` sets `outputs.<task>.vars.rows` (later lines win per name);
- `{"metrics": [{"name": "rows", "type": "counter", "value": 42, "tags": {"table": "t"}}]}`
  records metrics (`type` is `counter` or `timer`; a timer's value is in seconds);
- `{"logs": [{"level": "WARN", "message": "…"}]}` writes log lines.

A protocol line that cannot be read is never a failure: `parse_line` returns what it
could read plus `problems`, which the task logs as warnings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OPEN = "::{"
CLOSE = "}::"
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")
"""Levels of log lines, as Kestra names them; WARNING is read as WARN."""
METRIC_TYPES = ("counter", "timer")
KEYS = ("outputs", "metrics", "logs")
EXCERPT_CHARS = 120  # how much of an unreadable line a warning quotes
MAX_OUTPUT_DEPTH = 64  # outputs nested deeper fail the task: they would be stored, rendered, shown


@dataclass
class Message:
    """What one protocol line said, and what in it could not be used."""

    outputs: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)
    """(level, message) pairs, levels already one of LOG_LEVELS."""
    problems: list[str] = field(default_factory=list)
    fatal: str | None = None
    """Why the task must fail (outputs it cannot keep), or None."""


def log_level(name: object) -> str | None:
    """The canonical level for `name` (any case; WARNING means WARN), or None."""
    if not isinstance(name, str):
        return None
    upper = name.strip().upper()
    if upper == "WARNING":
        return "WARN"
    return upper if upper in LOG_LEVELS else None


def is_protocol_line(line: str) -> bool:
    """Whether `line` is meant as a protocol line (`::{…}::`, whitespace around ignored)."""
    text = line.strip()
    return len(text) >= len(OPEN) + len(CLOSE) and text.startswith(OPEN) and text.endswith(CLOSE)


def parse_line(line: str) -> Message | None:
    """The message of a protocol line; None when `line` is an ordinary line."""
    if not is_protocol_line(line):
        return None
    text = line.strip()[2:-2]
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        return Message(fatal=_too_deep("vars"))
    except ValueError as exc:
        return Message(problems=[f"not valid JSON ({_reason(exc)}): {_excerpt(text)}"])
    if not isinstance(data, dict):  # pragma: no cover - the braces make it an object
        return Message(problems=[f"not a JSON object: {_excerpt(text)}"])
    return _read(data)


def _read(data: dict[str, Any]) -> Message:
    message = Message()
    for key, value in data.items():
        if key == "outputs":
            _read_outputs(value, message)
        elif key == "metrics":
            _read_list(value, "metrics", _read_metric, message)
        elif key == "logs":
            _read_list(value, "logs", _read_log, message)
        else:
            message.problems.append(f"unknown key {key!r} (known: {', '.join(KEYS)})")
    return message


def _read_outputs(value: Any, message: Message) -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            if nesting_exceeds(item, MAX_OUTPUT_DEPTH):
                message.fatal = _too_deep(f"vars.{name}")
                return
        message.outputs.update(value)
    else:
        message.problems.append(f"'outputs' must be a JSON object, got {_kind(value)}")


ItemReader = Callable[[dict[str, Any], Message], str | None]


def _read_list(value: Any, key: str, read: ItemReader, message: Message) -> None:
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items):
        where = f"{key}[{index}]" if isinstance(value, list) else key
        if not isinstance(item, dict):
            message.problems.append(f"{where} must be a JSON object, got {_kind(item)}")
            continue
        problem = read(item, message)
        if problem:
            message.problems.append(f"{where}: {problem}")


def _read_metric(item: dict[str, Any], message: Message) -> str | None:
    name, kind, value, tags = (
        item.get("name"),
        item.get("type"),
        item.get("value"),
        item.get("tags"),
    )
    if not isinstance(name, str) or not name:
        return "a metric needs a 'name' (text)"
    if kind not in METRIC_TYPES:
        return f"metric {name!r}: 'type' must be counter or timer, got {kind!r}"
    if not _is_number(value):
        return f"metric {name!r}: 'value' must be a number, got {_kind(value)}"
    if tags is not None and not isinstance(tags, dict):
        return f"metric {name!r}: 'tags' must be a JSON object, got {_kind(tags)}"
    message.metrics.append({"name": name, "type": kind, "value": value, "tags": _tags(tags or {})})
    return None


def _read_log(item: dict[str, Any], message: Message) -> str | None:
    level = log_level(item.get("level", "INFO"))
    text = item.get("message")
    if level is None:
        return f"'level' must be one of {', '.join(LOG_LEVELS)}, got {item.get('level')!r}"
    if text is None:
        return "a log needs a 'message'"
    message.logs.append((level, text if isinstance(text, str) else json.dumps(text)))
    return None


def nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether lists and objects nest more than `limit` levels in `value` (no recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _too_deep(where: str) -> str:
    return f"outputs nested too deep: more than {MAX_OUTPUT_DEPTH} levels (at {where})"


def _tags(tags: dict[str, Any]) -> dict[str, str]:
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in tags.items()}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _reject_constant(name: str) -> Any:
    # json accepts NaN and Infinity, which no JSON reader after us would.
    raise ValueError(f"{name} is not a JSON number")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno + 2}"  # +2: the leading '::'
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


def _excerpt(text: str) -> str:
    whole = f"::{text}::"
    return whole if len(whole) <= EXCERPT_CHARS else whole[: EXCERPT_CHARS - 3] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object"
