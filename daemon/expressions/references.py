"""Which context names and dotted paths a template reads (best effort, for validation).

`{% for row in outputs.extract.rows %}{{ row.id }}{% endfor %}` reads the name
`outputs` and the path `outputs.extract.rows`; `row` and `loop` are the loop's own.
A path stops where a key is computed (`outputs.t[taskrun.value]` gives `outputs.t`
and `taskrun.value`) or is a list index.

`first_keys` gives, for each path, its root name, its first key when that key is
written literally (`inputs.name`, `inputs['name']`), where it starts in the source, and
whether a guard (`| default`, `??`, `is defined`) allows it to be undefined.
"""

from __future__ import annotations

from typing import NamedTuple

from .nodes import (
    Attr,
    Binary,
    Call,
    Conditional,
    Expr,
    Filter,
    For,
    If,
    Item,
    ListExpr,
    Literal,
    Logical,
    MapExpr,
    Name,
    Output,
    Set,
    Stmt,
    Test,
    Unary,
)


class FirstKey(NamedTuple):
    """`inputs.name` read at offset `start`: root "inputs", key "name" (None if computed)."""

    root: str
    key: str | None
    start: int
    guarded: bool


def collect(body: list[Stmt]) -> tuple[frozenset[str], tuple[str, ...]]:
    """The top-level names and the dotted paths `body` reads from its context."""
    walker = _Walker()
    walker.statements(body, set())
    return frozenset(walker.names), tuple(dict.fromkeys(walker.paths))


def first_keys(body: list[Stmt]) -> tuple[FirstKey, ...]:
    """Every context name `body` reads, with its first key, in order of appearance."""
    walker = _Walker()
    walker.statements(body, set())
    return tuple(walker.firsts)


class _Walker:
    def __init__(self) -> None:
        self.names: set[str] = set()
        self.paths: list[str] = []
        self.firsts: list[FirstKey] = []
        self.guards = 0  # how many guards enclose the expression being walked

    def statements(self, body: list[Stmt], bound: set[str]) -> None:
        for stmt in body:
            if isinstance(stmt, Output):
                self.expr(stmt.expr, bound)
            elif isinstance(stmt, If):
                for test, branch, _, _ in stmt.branches:
                    self.expr(test, bound)
                    self.statements(branch, set(bound))
                self.statements(stmt.otherwise, set(bound))
            elif isinstance(stmt, For):
                self.expr(stmt.iterable, bound)
                self.statements(stmt.body, bound | {stmt.name, "loop"})
                self.statements(stmt.otherwise, set(bound))
            elif isinstance(stmt, Set):
                self.expr(stmt.expr, bound)
                bound.add(stmt.name)

    def expr(self, node: Expr, bound: set[str]) -> None:
        if isinstance(node, Name | Attr | Item):
            self.path(node, bound)
        elif _guards(node):
            guarded, *rest = _children(node)
            self.guards += 1
            self.expr(guarded, bound)
            self.guards -= 1
            for child in rest:
                self.expr(child, bound)
        else:
            for child in _children(node):
                self.expr(child, bound)

    def path(self, node: Expr, bound: set[str]) -> None:
        parts: list[str | int] = []
        while isinstance(node, Attr | Item):
            if isinstance(node, Attr):
                parts.append(node.name)
            elif isinstance(node.key, Literal) and isinstance(node.key.value, str | int):
                parts.append(node.key.value)
            else:
                self.expr(node.key, bound)
                parts.clear()
            node = node.obj
        if not isinstance(node, Name):
            self.expr(node, bound)
            return
        if node.name in bound:
            return
        self.names.add(node.name)
        first = parts[-1] if parts and isinstance(parts[-1], str) else None
        self.firsts.append(FirstKey(node.name, first, node.start, self.guards > 0))
        words = [node.name]
        for part in reversed(parts):
            if not isinstance(part, str):
                break
            words.append(part)
        self.paths.append(".".join(words))


def _guards(node: Expr) -> bool:
    """Whether the first child of `node` may be undefined without an error."""
    if isinstance(node, Filter | Test):
        return node.lenient
    return isinstance(node, Logical) and node.op in ("??", "???")


def _children(node: Expr) -> list[Expr]:
    if isinstance(node, ListExpr):
        return node.items
    if isinstance(node, MapExpr):
        return [part for pair in node.pairs for part in pair]
    if isinstance(node, Call):
        return [*node.args, *node.kwargs.values()]
    if isinstance(node, Filter):
        return [node.value, *node.args, *node.kwargs.values()]
    if isinstance(node, Test):
        return [node.value]
    if isinstance(node, Unary):
        return [node.operand]
    if isinstance(node, Binary | Logical):
        return [node.left, node.right]
    if isinstance(node, Conditional):
        return [node.test, node.then, node.otherwise]
    return []
