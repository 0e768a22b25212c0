"""Walks statement and expression nodes for one render, within budgets.

`Evaluation` is the state of one render: the caller's variables, the scopes that
`for` and `set` create, and the counters of the budgets (steps, time, output size,
render() depth). It is also the `Runtime` that filters and functions see.

Only data is ever looked at: `.name` and `[key]` read keys of mappings and indexes of
lists, and nothing else; there is no path from a template to a Python attribute.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Mapping
from typing import Any

from .context import RenderContext
from .errors import BudgetExceeded, ExpressionError, ExpressionSyntaxError, UndefinedError
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
    Text,
    Unary,
)
from .operators import BINARY, negate, positive
from .runtime import Runtime
from .values import (
    MISSING,
    Undefined,
    carries_taint,
    equal,
    is_list,
    is_number,
    taint,
    to_text,
    truthy,
    type_name,
)

CHECK_EVERY = 256  # steps between two looks at the clock
MAX_LISTED_KEYS = 20  # keys named in an "is undefined" message

Loader = Callable[[str], list[Stmt]]


class _Output:
    """The text a render writes, bounded by the output budget."""

    __slots__ = ("limit", "parts", "size")

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit

    def write(self, text: str) -> None:
        self.size += len(text)
        if self.size > self.limit:
            raise BudgetExceeded(f"output is longer than {self.limit} characters")
        self.parts.append(text)


class Evaluation:
    """One render in progress (and the `Runtime` of its filters and functions)."""

    __slots__ = (
        "_context",
        "deadline",
        "depth",
        "load",
        "max_chars",
        "max_steps",
        "next_check",
        "scopes",
        "source",
        "steps",
        "variables",
    )

    def __init__(self, context: RenderContext, source: str, load: Loader) -> None:
        limits = context.limits
        self._context = context
        self.variables: Mapping[str, Any] = context.variables
        self.scopes: list[dict[str, Any]] = []
        self.source = source
        self.load = load
        self.depth = 0
        self.steps = 0
        self.max_steps = limits.max_steps
        self.max_chars = limits.max_output_chars
        self.next_check = min(CHECK_EVERY, self.max_steps + 1)
        self.deadline = time.monotonic() + limits.max_seconds

    # -- Runtime -----------------------------------------------------------------------

    @property
    def context(self) -> RenderContext:
        return self._context

    def charge(self, steps: int) -> None:
        self.steps += steps
        if self.steps >= self.next_check:
            self._checkpoint()

    def _checkpoint(self) -> None:
        if self.steps > self.max_steps:
            raise BudgetExceeded(f"evaluation took more than {self.max_steps} steps")
        if time.monotonic() > self.deadline:
            seconds = self._context.limits.max_seconds
            raise BudgetExceeded(f"evaluation took longer than {seconds:g} s")
        self.next_check = min(self.steps + CHECK_EVERY, self.max_steps + 1)

    def check_size(self, size: int) -> None:
        if size > self.max_chars:
            raise BudgetExceeded(f"result is longer than {self.max_chars} characters or items")

    def text(self, value: Any) -> str:
        return to_text(value, self.max_chars)

    def equal(self, left: Any, right: Any) -> bool:
        return equal(left, right, self.charge)

    def render_source(self, source: str) -> str:
        limit = self._context.limits.max_render_depth
        if self.depth >= limit:
            raise BudgetExceeded(f"render() nested more than {limit} levels deep")
        try:
            body = self.load(source)
        except ExpressionSyntaxError as exc:
            raise ExpressionError(f"render(): {exc}") from None
        saved = self.source
        self.source = source
        self.depth += 1
        out = _Output(self.max_chars)
        try:
            self.run(body, out)
        except BudgetExceeded:
            raise
        except ExpressionError as exc:
            raise ExpressionError(f"render(): {exc}") from None
        finally:
            self.source = saved
            self.depth -= 1
        return "".join(out.parts)

    # -- statements --------------------------------------------------------------------

    def render(self, body: list[Stmt]) -> str:
        out = _Output(self.max_chars)
        self.run(body, out)
        return "".join(out.parts)

    def run(self, body: list[Stmt], out: _Output) -> None:
        for stmt in body:
            if type(stmt) is Text:
                out.write(stmt.text)
            elif type(stmt) is Output:
                try:
                    value = self.eval(stmt.expr)
                    out.write(value if type(value) is str else self.print(value))
                except ExpressionError as exc:
                    raise self.locate(exc, stmt.start, stmt.end) from None
            else:
                _RUN[type(stmt)](self, stmt, out)

    def evaluate(self, stmt: Output) -> Any:
        """The native value of a lone `{{ expr }}`."""
        try:
            value = self.eval(stmt.expr)
            if isinstance(value, Undefined):
                if self._context.strict:
                    raise value.error()
                return None
            return value
        except ExpressionError as exc:
            raise self.locate(exc, stmt.start, stmt.end) from None

    def print(self, value: Any) -> str:
        if isinstance(value, Undefined) and not self._context.strict:
            return ""
        return to_text(value, self.max_chars)

    def locate(self, exc: ExpressionError, start: int, end: int) -> ExpressionError:
        """`exc`, naming the tag at `start:end` unless an inner tag was named already."""
        if not exc.expression:
            exc.expression = self.source[start:end]
            exc.offset = start
        return exc

    # -- expressions -------------------------------------------------------------------

    def eval(self, node: Expr) -> Any:
        self.steps += 1
        if self.steps >= self.next_check:
            self._checkpoint()
        return _EVAL[type(node)](self, node)

    def value(self, node: Expr) -> Any:
        """`node`'s value, which must not be undefined."""
        result = self.eval(node)
        if type(result) is Undefined:
            raise result.error()
        return result

    def span(self, node: Name | Attr | Item) -> str:
        return self.source[node.start : node.end]


# -- statements ------------------------------------------------------------------------


def _run_if(ev: Evaluation, stmt: If, out: _Output) -> None:
    for test, body, start, end in stmt.branches:
        try:
            passed = truthy(ev.eval(test))
        except ExpressionError as exc:
            raise ev.locate(exc, start, end) from None
        if passed:
            ev.run(body, out)
            return
    ev.run(stmt.otherwise, out)


def _run_for(ev: Evaluation, stmt: For, out: _Output) -> None:
    try:
        items = _loop_items(ev.value(stmt.iterable))
    except ExpressionError as exc:
        raise ev.locate(exc, stmt.start, stmt.end) from None
    if not items:
        ev.run(stmt.otherwise, out)
        return
    count = len(items)
    scope: dict[str, Any] = {}
    ev.scopes.append(scope)
    try:
        for index, item in enumerate(items):
            ev.charge(1)
            scope[stmt.name] = item
            scope["loop"] = {
                "index": index,
                "revindex": count - index - 1,
                "length": count,
                "first": index == 0,
                "last": index == count - 1,
            }
            ev.run(stmt.body, out)
    except ExpressionError as exc:
        raise ev.locate(exc, stmt.start, stmt.end) from None
    finally:
        ev.scopes.pop()


def _loop_items(value: Any) -> list[Any] | tuple[Any, ...]:
    """What `for` walks: a list's items; a map's entries as `{key, value}`; null: nothing."""
    if is_list(value):
        return value  # type: ignore[no-any-return]
    if isinstance(value, Mapping):
        return [{"key": k, "value": v} for k, v in value.items()]
    if value is None:
        return []
    raise ExpressionError(f"cannot loop over {type_name(value)}")


def _run_set(ev: Evaluation, stmt: Set, out: _Output) -> None:
    try:
        value = ev.value(stmt.expr)
    except ExpressionError as exc:
        raise ev.locate(exc, stmt.start, stmt.end) from None
    for scope in reversed(ev.scopes):
        if stmt.name in scope:
            scope[stmt.name] = value
            return
    if not ev.scopes:
        ev.scopes.append({})
    ev.scopes[-1][stmt.name] = value


_RUN: dict[type, Callable[[Evaluation, Any, _Output], None]] = {
    If: _run_if,
    For: _run_for,
    Set: _run_set,
}


# -- expressions -----------------------------------------------------------------------


def _literal(ev: Evaluation, node: Literal) -> Any:
    return node.value


def _list(ev: Evaluation, node: ListExpr) -> list[Any]:
    return [ev.value(item) for item in node.items]


def _map(ev: Evaluation, node: MapExpr) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key_node, value_node in node.pairs:
        key = ev.value(key_node)
        if not isinstance(key, str):
            if not (is_number(key) or isinstance(key, bool)):
                raise ExpressionError(f"a map key must be text, got {type_name(key)}")
            key = ev.text(key)
        result[key] = ev.value(value_node)
    return result


def _name(ev: Evaluation, node: Name) -> Any:
    name = node.name
    for scope in reversed(ev.scopes):
        if name in scope:
            return scope[name]
    found = ev.variables.get(name, MISSING)
    if found is MISSING:
        return Undefined(name, _no_variable(ev, name))
    return found


def _no_variable(ev: Evaluation, name: str) -> str:
    known = {str(k) for k in ev.variables} | {k for scope in ev.scopes for k in scope}
    hint = _hint(name, known)
    listing = ", ".join(sorted(known)[:MAX_LISTED_KEYS]) or "none"
    return f"there is no variable `{name}`{hint}; variables are: {listing}"


def _hint(word: str, choices: set[str]) -> str:
    near = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean `{near[0]}`?)" if near else ""


def _attr(ev: Evaluation, node: Attr) -> Any:
    obj = ev.eval(node.obj)
    if type(obj) is dict:
        found = obj.get(node.name, MISSING)
        if found is not MISSING:
            return found
    return _lookup(ev, node, obj, node.name)


def _item(ev: Evaluation, node: Item) -> Any:
    obj = ev.eval(node.obj)
    key = ev.value(node.key)
    if type(obj) is dict and type(key) is str:
        found = obj.get(key, MISSING)
        if found is not MISSING:
            return found
    return _lookup(ev, node, obj, key)


def _lookup(ev: Evaluation, node: Attr | Item, obj: Any, key: Any) -> Any:
    """The slow path of `.key` and `[key]`: the found value, or an Undefined saying why."""
    if isinstance(obj, Undefined):
        return Undefined(ev.span(node), obj.reason)
    base = ev.source[node.start : node.split].strip()
    if isinstance(obj, Mapping):
        found = _key_lookup(obj, key)
        if found is not MISSING:
            return found
        return Undefined(ev.span(node), _missing_key(base, obj, key))
    if is_list(obj):
        if is_number(key) and float(key).is_integer() and -len(obj) <= int(key) < len(obj):
            return obj[int(key)]
        if is_number(key):
            reason = f"`{base}` has {len(obj)} items, so there is no item {key}"
        else:
            reason = f"`{base}` is a list; index it with a number, as in `{base}[0]`"
        return Undefined(ev.span(node), reason)
    what = "null" if obj is None else type_name(obj)
    return Undefined(ev.span(node), f"`{base}` is {what}, which has no keys")


def _key_lookup(obj: Mapping[Any, Any], key: Any) -> Any:
    if not isinstance(key, str | int | float) or isinstance(key, bool):
        return MISSING
    found = obj.get(key, MISSING)
    if found is MISSING and not isinstance(key, str):
        found = obj.get(str(key), MISSING)
    return found


def _missing_key(base: str, obj: Mapping[Any, Any], key: Any) -> str:
    if not obj:
        return f"`{base}` has no key `{key}`; it is empty"
    names = [str(k) for k in obj]
    hint = _hint(str(key), set(names)) if len(names) <= 1000 else ""
    shown = sorted(names)[:MAX_LISTED_KEYS] if len(names) <= 1000 else names[:MAX_LISTED_KEYS]
    more = ", …" if len(names) > MAX_LISTED_KEYS else ""
    return f"`{base}` has no key `{key}`{hint}; it has: {', '.join(shown)}{more}"


def _call(ev: Evaluation, node: Call) -> Any:
    args = [ev.value(arg) for arg in node.args]
    kwargs = {name: ev.value(arg) for name, arg in node.kwargs.items()}
    runtime: Runtime = ev  # what a function may see of the render
    result = node.function(runtime, *args, **kwargs)
    return _tainted_if(ev, result, args, kwargs.values())


def _tainted_if(ev: Evaluation, result: Any, *inputs: Any) -> Any:
    """`result`, tainted when any input was computed from a secret (the caller is told)."""
    if not any(carries_taint(value) for group in inputs for value in group):
        return result
    found: list[str] = []
    result = taint(result, found)
    if found and ev.context.derived is not None:
        ev.context.derived(found)
    return result


def _filter(ev: Evaluation, node: Filter) -> Any:
    value = ev.eval(node.value)
    if not node.lenient and type(value) is Undefined:
        raise value.error()
    args = [ev.value(arg) for arg in node.args]
    kwargs = {name: ev.value(arg) for name, arg in node.kwargs.items()}
    runtime: Runtime = ev  # what a filter may see of the render
    try:
        result = node.function(runtime, value, *args, **kwargs)
    except BudgetExceeded:
        raise
    except ExpressionError as exc:
        raise ExpressionError(f"filter '{node.name}': {exc.message}") from None
    except (ArithmeticError, TypeError, ValueError) as exc:
        reason = f"cannot handle {type_name(value)} ({type(exc).__name__})"
        raise ExpressionError(f"filter '{node.name}': {reason}") from None
    return _tainted_if(ev, result, (value,), args, kwargs.values())


def _test(ev: Evaluation, node: Test) -> bool:
    value = ev.eval(node.value)
    if not node.lenient and type(value) is Undefined:
        raise value.error()
    return node.function(value) is not node.negated


def _unary(ev: Evaluation, node: Unary) -> Any:
    operand = ev.value(node.operand)
    if node.op == "not":
        return not truthy(operand)
    return negate(operand) if node.op == "-" else positive(operand)


def _binary(ev: Evaluation, node: Binary) -> Any:
    left, right = ev.value(node.left), ev.value(node.right)
    return _tainted_if(ev, BINARY[node.op](ev, left, right), (left, right))


def _logical(ev: Evaluation, node: Logical) -> Any:
    op = node.op
    if op == "and":
        return truthy(ev.eval(node.left)) and truthy(ev.eval(node.right))
    if op == "or":
        return truthy(ev.eval(node.left)) or truthy(ev.eval(node.right))
    try:
        left = ev.eval(node.left)
    except UndefinedError:  # `outputs.x.rows + 1 ?? 0`: any undefined on the left
        return ev.eval(node.right)
    if type(left) is Undefined or (op == "??" and left is None):
        return ev.eval(node.right)
    return left


def _conditional(ev: Evaluation, node: Conditional) -> Any:
    return ev.eval(node.then if truthy(ev.eval(node.test)) else node.otherwise)


_EVAL: dict[type, Callable[[Evaluation, Any], Any]] = {
    Literal: _literal,
    ListExpr: _list,
    MapExpr: _map,
    Name: _name,
    Attr: _attr,
    Item: _item,
    Call: _call,
    Filter: _filter,
    Test: _test,
    Unary: _unary,
    Binary: _binary,
    Logical: _logical,
    Conditional: _conditional,
}
