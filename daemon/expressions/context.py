"""What a caller hands to a render: the variables, the seams, the budgets."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DEFAULT_MAX_OUTPUT_CHARS = 1_000_000  # longest text (or list) one render may build
DEFAULT_MAX_STEPS = 100_000  # evaluation steps (nodes visited, loop turns) per render
DEFAULT_MAX_RENDER_DEPTH = 5  # render() inside render() inside …
DEFAULT_MAX_SECONDS = 1.0  # wall-clock budget of one render, checked every few hundred steps


def utc_now() -> datetime:
    """The real clock, timezone-aware, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Limits:
    """Budgets of one render; exceeding one is an `ExpressionError` that says which."""

    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS
    max_steps: int = DEFAULT_MAX_STEPS
    max_render_depth: int = DEFAULT_MAX_RENDER_DEPTH
    max_seconds: float = DEFAULT_MAX_SECONDS


@dataclass(frozen=True)
class RenderContext:
    """Everything a template may read.

    `variables` holds the context names (`flow`, `execution`, `inputs`, `outputs`, …)
    as plain JSON-like data. `secret` and `read` are the caller's seams for
    `secret('NAME')` and `read('path')`; without them those functions fail. `now` is
    the clock behind `now()`. With `strict` (the default, like Kestra's strict
    variables) printing an undefined value is an error; without it, it prints nothing.
    """

    variables: Mapping[str, Any]
    secret: Callable[[str], str] | None = None
    read: Callable[[str], str] | None = None
    now: Callable[[], datetime] = utc_now
    limits: Limits = field(default_factory=Limits)
    strict: bool = True
    derived: Callable[[list[str]], None] | None = None
    """Told of texts computed from a secret (by a filter, function or operator), so the
    caller masks them like the secret itself."""
