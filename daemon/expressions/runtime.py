"""What filters and functions may ask of the render that calls them.

A narrow seam: the context (for `secret`, `read`, `now`), the budgets, and nested
rendering for `render()`. Filters and functions never see the evaluator itself.
"""

from __future__ import annotations

from typing import Any, Protocol

from .context import RenderContext


class Runtime(Protocol):
    """The running render, as seen by a filter or a function."""

    @property
    def context(self) -> RenderContext: ...

    def charge(self, steps: int) -> None:
        """Pay `steps` evaluation steps; raises when the step or time budget is spent."""

    def check_size(self, size: int) -> None:
        """Raise when a text or list of `size` would exceed the output budget."""

    def text(self, value: Any) -> str:
        """`value` as it prints inside text (lists and maps as JSON), bounded."""
        ...

    def equal(self, left: Any, right: Any) -> bool:
        """Pebble's `==`, paying steps for deep comparisons."""
        ...

    def render_source(self, source: str) -> str:
        """Render `source` with the current variables, one level deeper (`render()`)."""
        ...
