"""Splits a template into text, `{{ … }}`, `{% … %}` and `{# … #}`, and builds statements.

Blocks (`if`, `for`) are tracked on an explicit stack rather than by recursion, and
their nesting is bounded, so no template can exhaust the interpreter's stack here or
later in the evaluator. Whitespace control follows Pebble: a `-` inside a delimiter
(`{{-`, `-}}`, `{%-`, `-%}`, `{#-`, `-#}`) strips all whitespace on that side.
Newlines after tags are kept (Kestra turns Pebble's newline trimming off).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from .errors import ExpressionSyntaxError, line_and_column
from .lexer import NAME, Token, tokenize
from .nodes import For, If, Output, Set, Stmt, Text
from .parser import ExpressionParser, describe, suggestion

MAX_BLOCK_DEPTH = 50  # `{% if %}` / `{% for %}` blocks open at once

_OPEN = re.compile(r"\{[{%#]")
_END_RAW = re.compile(r"\{%(-?)\s*end(raw|verbatim)\s*(-?)%\}")
_UNSUPPORTED = frozenset(
    [
        "autoescape",
        "block",
        "cache",
        "embed",
        "extends",
        "filter",
        "flush",
        "from",
        "import",
        "include",
        "macro",
        "parallel",
        "endautoescape",
        "endblock",
        "endcache",
        "endembed",
        "endfilter",
        "endmacro",
        "endparallel",
    ]
)


@dataclass(slots=True)
class _Block:
    node: If | For
    keyword: str
    start: int
    outer: list[Stmt]
    in_else: bool = False


def parse_statements(source: str) -> list[Stmt]:
    """The statements of a whole template."""
    return _TemplateParser(source).parse()


class _TemplateParser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.root: list[Stmt] = []
        self.body = self.root
        self.stack: list[_Block] = []
        self.trim_next = False

    def error(self, message: str, offset: int) -> NoReturn:
        raise ExpressionSyntaxError(message, self.source, offset)

    def parse(self) -> list[Stmt]:
        source = self.source
        pos = 0
        while True:
            found = _OPEN.search(source, pos)
            if found is None:
                self.add_text(source[pos:], trim_end=False)
                break
            start = found.start()
            trim = source.startswith("-", start + 2)
            self.add_text(source[pos:start], trim_end=trim)
            inner = start + 2 + trim
            kind = source[start + 1]
            if kind == "{":
                pos = self.output(start, inner)
            elif kind == "%":
                pos = self.tag(start, inner)
            else:
                pos = self.comment(start, inner)
        if self.stack:
            block = self.stack[-1]
            self.error(
                f"unclosed '{{% {block.keyword} %}}' ({_opened(source, block.start)}):"
                f" expected '{{% end{block.keyword} %}}'",
                block.start,
            )
        return self.root

    def add_text(self, text: str, trim_end: bool) -> None:
        if self.trim_next:
            text = text.lstrip()
            self.trim_next = False
        if trim_end:
            text = text.rstrip()
        if not text:
            return
        body = self.body
        if body and isinstance(body[-1], Text):
            body[-1] = Text(body[-1].text + text)
        else:
            body.append(Text(text))

    def comment(self, start: int, inner: int) -> int:
        end = self.source.find("#}", inner)
        if end < 0:
            self.error(f"unclosed '{{#' ({_opened(self.source, start)})", start)
        self.trim_next = end > inner and self.source[end - 1] == "-"
        return end + 2

    def read_tag(self, start: int, inner: int, closer: str) -> tuple[ExpressionParser, Token]:
        tokens, close = tokenize(self.source, inner, start)
        if close[1].lstrip("-") != closer:
            self.error(f"unexpected {describe(close, self.source)}: expected '{closer}'", close[2])
        if not tokens:
            what = "expression" if closer == "}}" else "tag"
            self.error(f"empty {what}", start)
        tokens.append(close)
        return ExpressionParser(self.source, tokens), close

    def output(self, start: int, inner: int) -> int:
        parser, close = self.read_tag(start, inner, "}}")
        expr = parser.expression()
        parser.expect_end()
        self.body.append(Output(expr, start, close[3]))
        self.trim_next = close[1][0] == "-"
        return close[3]

    def tag(self, start: int, inner: int) -> int:
        parser, close = self.read_tag(start, inner, "%}")
        kind, word, offset, _ = parser.tokens[0]
        if kind != NAME:
            self.error("expected a tag name such as 'if', 'for' or 'set'", offset)
        parser.pos = 1
        if word in ("raw", "verbatim"):
            parser.expect_end()
            return self.raw(start, close)
        handler = _TAGS.get(word)
        if handler is None:
            if word in _UNSUPPORTED:
                self.error(f"tag '{word}' is not supported", offset)
            self.error(f"unknown tag '{word}'{suggestion(word, _TAGS)}", offset)
        handler(self, start, close[3], parser)
        parser.expect_end()
        self.trim_next = close[1][0] == "-"
        return close[3]

    def raw(self, start: int, close: Token) -> int:
        found = _END_RAW.search(self.source, close[3])
        if found is None:
            self.error(f"unclosed '{{% raw %}}' ({_opened(self.source, start)})", start)
        text = self.source[close[3] : found.start()]
        if close[1][0] == "-":
            text = text.lstrip()
        if found.group(1):
            text = text.rstrip()
        self.trim_next = False
        self.add_text(text, trim_end=False)
        self.trim_next = bool(found.group(3))
        return found.end()

    # -- tags --------------------------------------------------------------------------

    def push(self, node: If | For, keyword: str, start: int, body: list[Stmt]) -> None:
        if len(self.stack) >= MAX_BLOCK_DEPTH:
            self.error(f"blocks nested too deeply (more than {MAX_BLOCK_DEPTH})", start)
        self.body.append(node)
        self.stack.append(_Block(node, keyword, start, self.body))
        self.body = body

    def open_if(self, start: int, end: int, parser: ExpressionParser) -> None:
        body: list[Stmt] = []
        test = parser.expression()
        self.push(If([(test, body, start, end)], []), "if", start, body)

    def open_for(self, start: int, end: int, parser: ExpressionParser) -> None:
        name = parser.expect_name("a loop variable name")[1]
        word = parser.tokens[parser.pos]
        if word[0] != NAME or word[1] != "in":
            parser.unexpected("'in'")
        parser.pos += 1
        node = For(name, parser.expression(), [], [], start, end)
        self.push(node, "for", start, node.body)

    def current(self, word: str, start: int, expected: str) -> _Block:
        """The innermost open block, which must be one of `expected` and not in its else."""
        if not self.stack or self.stack[-1].keyword not in expected.split():
            self.error(
                f"'{{% {word} %}}' without a matching '{{% {expected.split()[0]} %}}'", start
            )
        block = self.stack[-1]
        if block.in_else:
            self.error(
                f"'{{% {word} %}}' after '{{% else %}}' in the '{{% {block.keyword} %}}'"
                f" ({_opened(self.source, block.start)})",
                start,
            )
        return block

    def elseif(self, start: int, end: int, parser: ExpressionParser) -> None:
        word = parser.tokens[0][1]
        node = self.current(word, start, "if").node
        assert isinstance(node, If)
        body: list[Stmt] = []
        node.branches.append((parser.expression(), body, start, end))
        self.body = body

    def otherwise(self, start: int, end: int, parser: ExpressionParser) -> None:
        block = self.current("else", start, "if for")
        block.in_else = True
        self.body = block.node.otherwise

    def close_block(self, start: int, end: int, parser: ExpressionParser) -> None:
        word = parser.tokens[0][1]
        keyword = word[3:]
        if not self.stack:
            self.error(f"'{{% {word} %}}' without a matching '{{% {keyword} %}}'", start)
        block = self.stack[-1]
        if block.keyword != keyword:
            self.error(
                f"'{{% {word} %}}' does not close the '{{% {block.keyword} %}}'"
                f" ({_opened(self.source, block.start)})",
                start,
            )
        self.stack.pop()
        self.body = block.outer

    def assign(self, start: int, end: int, parser: ExpressionParser) -> None:
        name = parser.expect_name("a variable name")[1]
        parser.expect_op("=")
        self.body.append(Set(name, parser.expression(), start, end))


_TAGS: dict[str, Callable[[_TemplateParser, int, int, ExpressionParser], None]] = {
    "if": _TemplateParser.open_if,
    "elseif": _TemplateParser.elseif,
    "elif": _TemplateParser.elseif,
    "else": _TemplateParser.otherwise,
    "endif": _TemplateParser.close_block,
    "for": _TemplateParser.open_for,
    "endfor": _TemplateParser.close_block,
    "set": _TemplateParser.assign,
}


def _opened(source: str, offset: int) -> str:
    line, column = line_and_column(source, offset)
    return f"opened at line {line}, column {column}"
