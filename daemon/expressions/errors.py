"""The two ways an expression fails: it does not parse, or it fails while rendering.

Both carry what a user needs to find the problem. A syntax error knows its place in
the source string (0-based offset, 1-based line and column); the flow validator adds
the file and the property. A runtime error names the tag that failed and the reason.
Both pickle, because big syncs parse flows in a process pool.
"""

from __future__ import annotations

from typing import Any

from ..errors import HeadwaterError


def line_and_column(source: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a 0-based `offset` in `source`."""
    offset = max(0, min(offset, len(source)))
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return line, column


class ExpressionSyntaxError(HeadwaterError):
    """A template that does not parse; `offset`, `line`, `column` point at the problem."""

    def __init__(self, message: str, source: str, offset: int) -> None:
        self.message = message
        self.source = source
        self.offset = offset
        self.line, self.column = line_and_column(source, offset)
        super().__init__(message)

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.source, self.offset))


class ExpressionError(HeadwaterError):
    """A template that failed while rendering.

    `expression` is the source text of the failing tag (`{{ … }}` or `{% … %}`) and
    `offset` its place in the template (-1 when unknown). Messages never hold a
    secret's value.
    """

    def __init__(self, message: str, expression: str = "", offset: int = -1) -> None:
        self.message = message
        self.expression = expression
        self.offset = offset
        super().__init__(message)

    def __str__(self) -> str:
        if not self.expression:
            return self.message
        return f"{self.expression}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.expression, self.offset))


class BudgetExceeded(ExpressionError):
    """A render that ran out of steps, time, output size or render() depth."""


class UndefinedError(ExpressionError):
    """An undefined value was used; `??` and `???` recover from it (as Kestra's do)."""
