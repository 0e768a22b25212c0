"""A precedence-climbing parser from tokens to expression nodes.

Precedence, loosest first (docs/decisions/0001-expression-language.md):

    a ? b : c  <  or ||  <  and &&  <  not  <  == != < > <= >= equals
    in, not in, contains, is [not]  <  ..  <  + -  <  * / %  <  | filter  <  ~
    <  ?? ???  <  unary - + !  <  postfix . [] ()

This is Pebble's order where flows notice it: `a ?? b | date('yyyy-MM-dd')` formats
whichever side was chosen, `'a' ~ 'b' | upper` upper-cases both, `-2 | abs` is 2.

Binary operators are left-associative, the ternary right-associative. Nesting is
bounded (MAX_NESTING) so that a hostile `((((…` is a syntax error, never a
RecursionError, and the evaluator's recursion stays shallow too.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from . import filters, functions, predicates
from .errors import ExpressionError, ExpressionSyntaxError
from .lexer import CLOSE, FLOAT, INT, NAME, OP, STRING, Token
from .nodes import (
    Attr,
    Binary,
    Call,
    Conditional,
    Expr,
    Filter,
    Item,
    ListExpr,
    Literal,
    Logical,
    MapExpr,
    Name,
    Test,
    Unary,
)
from .signatures import FILTER_FIXED, FUNCTION_FIXED, check_call, parameter_names

MAX_NESTING = 100  # brackets, unary operators and operator chains, counted together
SUGGESTION_CUTOFF = 0.6  # difflib ratio above which "did you mean" is offered

_PRECEDENCE: dict[str, int] = {
    "?": 2,
    "or": 3,
    "||": 3,
    "and": 4,
    "&&": 4,
    # 5: prefix `not`
    "==": 6,
    "!=": 6,
    "<": 6,
    ">": 6,
    "<=": 6,
    ">=": 6,
    "equals": 6,
    "in": 6,
    "not": 6,  # only as `not in`
    "contains": 6,
    "is": 6,
    "..": 7,
    "+": 9,
    "-": 9,
    "*": 10,
    "/": 10,
    "%": 10,
    "|": 12,
    "~": 13,
    "??": 14,
    "???": 14,
    # 15: prefix `-`, `+`, `!`
}
_NOT_PRECEDENCE = 5
_UNARY_PRECEDENCE = 15
_LOGICAL = {"??": "??", "???": "???", "or": "or", "||": "or", "and": "and", "&&": "and"}
_ALIASES = {"equals": "=="}
_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None, "none": None}
_INDEX_PAIR = re.compile(r"[0-9]+\.[0-9]+")


def suggestion(name: str, choices: Mapping[str, object]) -> str:
    """`; did you mean 'x'?` for the nearest of `choices`, or nothing."""
    near = difflib.get_close_matches(name, list(choices), n=1, cutoff=SUGGESTION_CUTOFF)
    return f"; did you mean '{near[0]}'?" if near else ""


def describe(token: Token, source: str) -> str:
    kind, value, start, end = token
    if kind == STRING:
        return f"string {source[start:end]}"
    if kind in (INT, FLOAT):
        return f"number {source[start:end]}"
    return f"'{value}'"


class ExpressionParser:
    """Parses the tokens of one tag; the closing-delimiter token ends the list."""

    __slots__ = ("depth", "pos", "source", "tokens")

    def __init__(self, source: str, tokens: list[Token]) -> None:
        self.source = source
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    # -- helpers -----------------------------------------------------------------------

    def error(self, message: str, token: Token | None = None) -> NoReturn:
        offset = (token or self.tokens[self.pos])[2]
        raise ExpressionSyntaxError(message, self.source, offset)

    def unexpected(self, expected: str) -> NoReturn:
        token = self.tokens[self.pos]
        self.error(f"unexpected {describe(token, self.source)} in expression: expected {expected}")

    def at_end(self) -> bool:
        return self.tokens[self.pos][0] == CLOSE

    def take_op(self, text: str) -> bool:
        token = self.tokens[self.pos]
        if token[0] == OP and token[1] == text:
            self.pos += 1
            return True
        return False

    def expect_op(self, text: str) -> Token:
        token = self.tokens[self.pos]
        if token[0] != OP or token[1] != text:
            self.unexpected(f"'{text}'")
        self.pos += 1
        return token

    def expect_name(self, what: str = "a name") -> Token:
        token = self.tokens[self.pos]
        if token[0] != NAME:
            self.unexpected(what)
        self.pos += 1
        return token

    def expect_end(self) -> None:
        if not self.at_end():
            self.unexpected(f"'{_closing(self.tokens[-1])}'")

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.error(f"expression too deeply nested or too long (more than {MAX_NESTING} levels)")

    # -- expressions -------------------------------------------------------------------

    def expression(self, min_prec: int = 0) -> Expr:
        """One expression whose loosest operator binds at least as tight as `min_prec`."""
        saved = self.depth
        self.nest()
        left = self.unary()
        tokens = self.tokens
        while True:
            kind, value, _, _ = tokens[self.pos]
            if kind != OP and kind != NAME:
                break
            prec = _PRECEDENCE.get(value)
            if prec is None or prec < min_prec:
                break
            if value == "not" and not self._next_is_name("in"):
                break
            self.pos += 1
            self.nest()
            left = self.operator(left, value, prec)
        self.depth = saved
        return left

    def _next_is_name(self, word: str) -> bool:
        token = self.tokens[self.pos + 1]
        return token[0] == NAME and token[1] == word

    def operator(self, left: Expr, op: str, prec: int) -> Expr:
        """The rest of a binary construct whose operator `op` was just consumed."""
        if op == "|":
            return self.filter(left)
        if op == "is":
            return self.test(left)
        if op == "?":
            then = self.expression(0)
            self.expect_op(":")
            return Conditional(left, then, self.expression(prec))
        if op == "*" and self.take_op("*"):
            self.error(
                "'**' is not supported: there is no power operator", self.tokens[self.pos - 2]
            )
        if op == "not":
            self.pos += 1  # `in`
            return Unary("not", Binary("in", left, self.expression(prec + 1)))
        right = self.expression(prec + 1)
        logical = _LOGICAL.get(op)
        if logical is not None:
            return Logical(logical, left, right)
        return Binary(_ALIASES.get(op, op), left, right)

    def unary(self) -> Expr:
        kind, value, _, _ = self.tokens[self.pos]
        if kind == NAME and value == "not":
            self.pos += 1
            return Unary("not", self.expression(_NOT_PRECEDENCE))
        if kind == OP and value in ("-", "+", "!"):
            self.pos += 1
            operand = self.expression(_UNARY_PRECEDENCE)
            if value == "!":
                return Unary("not", operand)
            if isinstance(operand, Literal) and type(operand.value) in (int, float):
                return Literal(-operand.value if value == "-" else operand.value)
            return Unary(value, operand)
        start = self.tokens[self.pos][2]
        return self.postfix(self.primary(), start)

    def primary(self) -> Expr:
        token = self.tokens[self.pos]
        kind, value, start, end = token
        self.pos += 1
        if kind == NAME:
            if value in _CONSTANTS:
                return Literal(_CONSTANTS[value])
            if self.take_op("("):
                return self.call(token)
            return Name(value, start, end)
        if kind in (STRING, INT, FLOAT):
            return Literal(value)
        if kind == OP:
            if value == "(":
                inner = self.expression(0)
                self.expect_op(")")
                return inner
            if value == "[":
                return ListExpr(self.sequence("]"))
            if value == "{":
                return self.mapping()
        self.pos -= 1
        self.unexpected("a value")

    def _next_is_op(self, text: str) -> bool:
        token = self.tokens[self.pos + 1]
        return token[0] == OP and token[1] == text

    def postfix(self, node: Expr, start: int) -> Expr:
        """`.name`, `.0`, `[key]` after a value; a call on anything but a name is refused."""
        tokens = self.tokens
        while True:
            kind, value, split, _ = tokens[self.pos]
            if kind != OP:
                return node
            if value == ".":
                node = self.attribute(node, start, split)
            elif value == "[":
                self.pos += 1
                key = self.expression(0)
                end = self.expect_op("]")[3]
                node = Item(node, key, start, split, end)
            elif value == "(":
                self.error("only functions can be called, and only by name, as in now()")
            else:
                return node
            self.nest()

    def attribute(self, node: Expr, start: int, split: int) -> Expr:
        self.pos += 1
        kind, value, _, end = self.tokens[self.pos]
        self.pos += 1
        if kind in (NAME, INT):
            return Attr(node, value, start, split, end)
        text = self.source[self.tokens[self.pos - 1][2] : end]
        if kind == FLOAT and _INDEX_PAIR.fullmatch(text):  # `list.0.1` lexes as `list . 0.1`
            first, second = text.split(".")
            inner_end = end - len(second) - 1
            inner = Attr(node, int(first), start, split, inner_end)
            return Attr(inner, int(second), start, inner_end, end)
        self.pos -= 1
        self.unexpected("a name after '.'")

    def sequence(self, closer: str) -> list[Expr]:
        items: list[Expr] = []
        while not self.take_op(closer):
            if items:
                self.expect_op(",")
                if self.take_op(closer):  # a trailing comma
                    break
            items.append(self.expression(0))
        return items

    def mapping(self) -> MapExpr:
        pairs: list[tuple[Expr, Expr]] = []
        while not self.take_op("}"):
            if pairs:
                self.expect_op(",")
                if self.take_op("}"):
                    break
            key = self.expression(0)
            self.expect_op(":")
            pairs.append((key, self.expression(0)))
        return MapExpr(pairs)

    # -- calls, filters, tests ---------------------------------------------------------

    def call(self, name_token: Token) -> Call:
        name = name_token[1]
        function = functions.FUNCTIONS.get(name)
        if function is None:
            hint = suggestion(name, functions.FUNCTIONS)
            self.error(f"unknown function '{name}'{hint}", name_token)
        args, kwargs = self.arguments()
        self.check(function, FUNCTION_FIXED, args, kwargs, f"function '{name}'", name_token)
        return Call(name, function, args, kwargs)

    def filter(self, value: Expr) -> Filter:
        token = self.expect_name("a filter name after '|'")
        name = token[1]
        function = filters.FILTERS.get(name)
        if function is None:
            self.error(f"unknown filter '{name}'{suggestion(name, filters.FILTERS)}", token)
        args: list[Expr] = []
        kwargs: dict[str, Expr] = {}
        if self.take_op("("):
            args, kwargs = self.arguments()
        self.check(function, FILTER_FIXED, args, kwargs, f"filter '{name}'", token)
        checker = filters.LITERAL_CHECKS.get(name)
        if checker is not None:
            self.check_literals(
                checker, parameter_names(function, FILTER_FIXED), args, kwargs, name, token
            )
        return Filter(value, name, function, args, kwargs, name in filters.LENIENT)

    def test(self, value: Expr) -> Test:
        negated = False
        token = self.tokens[self.pos]
        if token[0] == NAME and token[1] == "not":
            negated = True
            self.pos += 1
        token = self.expect_name("a test name after 'is', such as 'defined'")
        name = token[1]
        function = predicates.TESTS.get(name)
        if function is None:
            self.error(f"unknown test '{name}'{suggestion(name, predicates.TESTS)}", token)
        return Test(value, name, function, negated, name in predicates.LENIENT)

    def check_literals(
        self,
        checker: Callable[[dict[str, Any]], None],
        names: tuple[str, ...],
        args: list[Expr],
        kwargs: dict[str, Expr],
        name: str,
        token: Token,
    ) -> None:
        """Runs the filter's own check on the arguments written as literals."""
        literals = {names[i]: a.value for i, a in enumerate(args) if isinstance(a, Literal)}
        literals.update({k: v.value for k, v in kwargs.items() if isinstance(v, Literal)})
        try:
            checker(literals)
        except ExpressionError as exc:
            self.error(f"filter '{name}': {exc.message}", token)

    def arguments(self) -> tuple[list[Expr], dict[str, Expr]]:
        """Arguments after `(` up to `)`: positional first, then `name=value`."""
        args: list[Expr] = []
        kwargs: dict[str, Expr] = {}
        while not self.take_op(")"):
            if args or kwargs:
                self.expect_op(",")
            token = self.tokens[self.pos]
            if token[0] == NAME and self._next_is_op("="):
                self.pos += 2
                if token[1] in kwargs:
                    self.error(f"argument '{token[1]}' given twice", token)
                kwargs[token[1]] = self.expression(0)
            elif kwargs:
                self.error("positional argument after a named one", token)
            else:
                args.append(self.expression(0))
        return args, kwargs

    def check(
        self,
        function: Callable[..., Any],
        fixed: int,
        args: list[Expr],
        kwargs: dict[str, Expr],
        what: str,
        token: Token,
    ) -> None:
        problem = check_call(function, fixed, len(args), tuple(kwargs))
        if problem is not None:
            self.error(f"{what}: {problem}", token)


def _closing(close: Token) -> str:
    return str(close[1]).lstrip("-")
