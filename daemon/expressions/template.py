"""Templates: parse once (cached by source), render many times.

`parse("rows: {{ outputs.extract.vars.rows | default(0) }}")` gives a Template;
its `render(ctx)` gives the text ("rows: 12") and `evaluate(ctx)` the native value
when the template is one lone `{{ … }}` (12).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .context import RenderContext
from .errors import ExpressionError, ExpressionSyntaxError
from .evaluator import Evaluation
from .nodes import Output, Stmt, Text
from .references import FirstKey, collect, first_keys
from .tags import parse_statements

PARSE_CACHE_SIZE = 4096  # distinct template strings kept parsed


class Template:
    """A parsed template. Immutable, and shared between threads and renders."""

    __slots__ = ("_constant", "_firsts", "_names", "_paths", "_single", "body", "source")

    def __init__(self, source: str, body: list[Stmt]) -> None:
        self.source = source
        self.body = body
        self._single = _lone_output(body)
        self._constant = _constant_text(body)
        self._names: frozenset[str] | None = None
        self._paths: tuple[str, ...] = ()
        self._firsts: tuple[FirstKey, ...] | None = None

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def render(self, ctx: RenderContext) -> str:
        """The rendered text; raises ExpressionError naming the failing tag."""
        if self._constant is not None:
            return self._constant
        evaluation = Evaluation(ctx, self.source, _load)
        try:
            return evaluation.render(self.body)
        except RecursionError:
            raise ExpressionError("expression nested too deeply to evaluate") from None

    def evaluate(self, ctx: RenderContext) -> Any:
        """The native value of a lone `{{ expr }}` (whitespace around is ignored), else
        the rendered text."""
        if self._single is None:
            return self.render(ctx)
        evaluation = Evaluation(ctx, self.source, _load)
        try:
            return evaluation.evaluate(self._single)
        except RecursionError:
            raise ExpressionError("expression nested too deeply to evaluate") from None

    @property
    def names(self) -> frozenset[str]:
        """Top-level context names read, e.g. {"outputs", "inputs"} (not loop variables)."""
        if self._names is None:
            self._names, self._paths = collect(self.body)
        return self._names

    @property
    def references(self) -> list[str]:
        """Dotted paths read, like "outputs.extract.rows", in order of appearance."""
        if self._names is None:
            self._names, self._paths = collect(self.body)
        return list(self._paths)

    @property
    def first_keys(self) -> tuple[FirstKey, ...]:
        """Each context name read with its first literal key (`inputs.name`), for checks."""
        if self._firsts is None:
            self._firsts = first_keys(self.body)
        return self._firsts


def _lone_output(body: list[Stmt]) -> Output | None:
    single: Output | None = None
    for stmt in body:
        if isinstance(stmt, Output) and single is None:
            single = stmt
        elif not (isinstance(stmt, Text) and not stmt.text.strip()):
            return None
    return single


def _constant_text(body: list[Stmt]) -> str | None:
    if all(isinstance(s, Text) for s in body):
        return "".join(s.text for s in body if isinstance(s, Text))
    return None


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def parse(source: str) -> Template:
    """The template `source`, parsed (cached); raises ExpressionSyntaxError."""
    try:
        return Template(source, parse_statements(source))
    except RecursionError:
        raise ExpressionSyntaxError("template nested too deeply", source, 0) from None


def _load(source: str) -> list[Stmt]:
    return parse(source).body


def render(source: str, ctx: RenderContext) -> str:
    """`parse(source).render(ctx)`."""
    return parse(source).render(ctx)


def has_expression(text: str) -> bool:
    """Whether `text` holds a tag (`{{`, `{%` or `{#`) and so needs rendering."""
    return "{{" in text or "{%" in text or "{#" in text
