"""Splits an expression into tokens with one compiled regular expression.

A token is a tuple `(kind, value, start, end)` with offsets into the whole template,
so errors point at the right column. Tokenizing starts just after an opening
delimiter (`{{` or `{%`) and stops at the first closing one (`}}`, `%}`, with an
optional `-` for whitespace control) that is not inside a string or a map literal.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ExpressionSyntaxError, line_and_column

NAME = "name"
INT = "int"
FLOAT = "float"
STRING = "string"
OP = "op"
CLOSE = "close"

Token = tuple[str, Any, int, int]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<close>-?\}\}|-?%\})
    | (?P<float>[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)
    | (?P<int>[0-9]+)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<op>\?\?\?|\?\?|\.\.|==|!=|<=|>=|&&|\|\||[-+*/%~<>!?:.,|()\[\]{}=])
    )""",
    re.VERBOSE | re.DOTALL,
)
_SPACE = re.compile(r"\s*")
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0"}


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if len(code) == 5:
        return chr(int(code[1:], 16))
    return _ESCAPES.get(code, code)


def string_value(text: str) -> str:
    """The value of a quoted string literal: quotes removed, backslash escapes applied."""
    body = text[1:-1]
    return _ESCAPE.sub(_unescape, body) if "\\" in body else body


def tokenize(source: str, pos: int, opener: int) -> tuple[list[Token], Token]:
    """Tokens from `pos` up to the closing delimiter, and the closing token itself.

    `opener` is the offset of the opening delimiter, for the "unclosed" message.
    """
    tokens: list[Token] = []
    append = tokens.append
    match = _TOKEN.match
    braces = 0
    while True:
        found = match(source, pos)
        if found is None:
            raise _no_token(source, pos, opener)
        kind = found.lastgroup or ""
        start, pos = found.span(kind)
        if kind == NAME:
            append((NAME, source[start:pos], start, pos))
        elif kind == OP:
            text = source[start:pos]
            if text == "{":
                braces += 1
            elif text == "}":
                braces -= 1
            append((OP, text, start, pos))
        elif kind == CLOSE:
            text = source[start:pos]
            if braces > 0 and text[0] == "}":
                # `}}` that ends a map literal inside the expression, not the tag.
                braces -= 1
                pos = start + 1
                append((OP, "}", start, pos))
                continue
            return tokens, (CLOSE, text, start, pos)
        elif kind == STRING:
            append((STRING, string_value(source[start:pos]), start, pos))
        elif kind == INT:
            append((INT, int(source[start:pos]), start, pos))
        else:
            append((FLOAT, float(source[start:pos]), start, pos))


def _no_token(source: str, pos: int, opener: int) -> ExpressionSyntaxError:
    pos = _SPACE.match(source, pos).end()  # type: ignore[union-attr]
    if pos >= len(source):
        delimiter = source[opener : opener + 2]
        line, column = line_and_column(source, opener)
        return ExpressionSyntaxError(
            f"unclosed '{delimiter}' (opened at line {line}, column {column})", source, opener
        )
    char = source[pos]
    if char in "'\"":
        return ExpressionSyntaxError(f"unclosed string literal (missing {char})", source, pos)
    return ExpressionSyntaxError(f"unexpected character {char!r}", source, pos)
