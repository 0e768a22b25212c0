"""The syntax tree of a template: expression nodes and statement nodes.

Offsets (`start`, `end`) index the template source. Nodes are built once per
distinct source (parsing is cached) and never change after; a render only reads them.
Filter and function nodes hold the Python callable they resolve to, found at parse
time, so an unknown name is a syntax error and a template can never name a callable
that is not in the tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Expr:
    """Base of expression nodes."""

    __slots__ = ()


@dataclass(slots=True, eq=False)
class Literal(Expr):
    value: Any


@dataclass(slots=True, eq=False)
class ListExpr(Expr):
    items: list[Expr]


@dataclass(slots=True, eq=False)
class MapExpr(Expr):
    pairs: list[tuple[Expr, Expr]]


@dataclass(slots=True, eq=False)
class Name(Expr):
    name: str
    start: int
    end: int


@dataclass(slots=True, eq=False)
class Attr(Expr):
    """`obj.name` (or `obj.0` on a list); `start:split` is the source of `obj`."""

    obj: Expr
    name: str | int
    start: int
    split: int
    end: int


@dataclass(slots=True, eq=False)
class Item(Expr):
    """`obj[key]`; `start:split` is the source of `obj`."""

    obj: Expr
    key: Expr
    start: int
    split: int
    end: int


@dataclass(slots=True, eq=False)
class Call(Expr):
    """`name(args…)`: a function from the functions table."""

    name: str
    function: Callable[..., Any]
    args: list[Expr]
    kwargs: dict[str, Expr]


@dataclass(slots=True, eq=False)
class Filter(Expr):
    """`value | name(args…)`: a filter from the filters table."""

    value: Expr
    name: str
    function: Callable[..., Any]
    args: list[Expr]
    kwargs: dict[str, Expr]
    lenient: bool  # the filter handles undefined values itself (`default`)


@dataclass(slots=True, eq=False)
class Test(Expr):
    """`value is [not] name`."""

    value: Expr
    name: str
    function: Callable[[Any], bool]
    negated: bool
    lenient: bool  # `defined`, `null`: undefined is an answer, not an error


@dataclass(slots=True, eq=False)
class Unary(Expr):
    op: str  # "-", "+", "not"
    operand: Expr


@dataclass(slots=True, eq=False)
class Binary(Expr):
    """Arithmetic, comparison, `~`, `in`, `..`: both sides are evaluated."""

    op: str
    left: Expr
    right: Expr


@dataclass(slots=True, eq=False)
class Logical(Expr):
    """`and`, `or`, `??`, `???`: the right side is evaluated only when needed."""

    op: str
    left: Expr
    right: Expr


@dataclass(slots=True, eq=False)
class Conditional(Expr):
    """`test ? then : otherwise`."""

    test: Expr
    then: Expr
    otherwise: Expr


class Stmt:
    """Base of statement nodes; `start`/`end` span the tag for error messages."""

    __slots__ = ()


@dataclass(slots=True, eq=False)
class Text(Stmt):
    text: str


@dataclass(slots=True, eq=False)
class Output(Stmt):
    """`{{ expr }}`."""

    expr: Expr
    start: int
    end: int


@dataclass(slots=True, eq=False)
class If(Stmt):
    """`{% if %}…{% elseif %}…{% else %}…{% endif %}`.

    Each branch is (test, body, start, end), the offsets spanning its `if`/`elseif` tag.
    """

    branches: list[tuple[Expr, list[Stmt], int, int]]
    otherwise: list[Stmt]


@dataclass(slots=True, eq=False)
class For(Stmt):
    """`{% for name in iterable %}…{% else %}…{% endfor %}`."""

    name: str
    iterable: Expr
    body: list[Stmt]
    otherwise: list[Stmt]
    start: int
    end: int


@dataclass(slots=True, eq=False)
class Set(Stmt):
    """`{% set name = expr %}`."""

    name: str
    expr: Expr
    start: int
    end: int
