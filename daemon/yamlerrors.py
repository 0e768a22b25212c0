"""What a YAML syntax error means, said for the mistakes people make most.

libyaml reports where its parser gave up, in its own words ("mapping values are not
allowed in this context"), and that is often a line or more below the mistake. For the
common mistakes (a tab in the indentation, a key indented unlike its siblings, a key
without its colon, a quote never closed, a list item at the wrong level) `explain`
names the mistake, says what to do, and points at the line where it was made. libyaml's
sentence follows in parentheses where it can still help. A mistake not recognised here
keeps libyaml's sentence alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

# What libyaml counts as the end of a line (str.splitlines also splits at \f and \v).
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
# A line that holds a mapping key: `key:` or `- key:` followed by a space or the end.
_KEY_LINE = re.compile(r"\s*(?:-\s+)*[^\s#'\"-][^:#]*:(?:\s|$)")


@dataclass(frozen=True)
class Explained:
    """A YAML error as a user reads it: 1-based line and column, and the message."""

    line: int
    column: int
    message: str


@dataclass(frozen=True)
class _Error:
    """A libyaml error with the text it was raised on."""

    context: str
    problem: str
    context_at: tuple[int, int] | None  # 0-based (line, column), as libyaml marks them
    problem_at: tuple[int, int] | None
    char: str  # the character at the problem mark ("" at the end of the text)
    lines: list[str]
    text: str
    loader: Any

    def line(self, index: int) -> str:
        return self.lines[index] if 0 <= index < len(self.lines) else ""

    def libyaml(self, reported: tuple[int, int]) -> str:
        """libyaml's sentence, with its own position when that is not `reported`."""
        sentence = "; ".join(p for p in (self.context, self.problem) if p)
        if self.problem_at and self.problem_at != reported:
            line, column = self.problem_at
            sentence += f" at line {line + 1}, column {column + 1}"
        return f' (libyaml: "{sentence}")'


def explain(exc: yaml.MarkedYAMLError, text: str, loader: Any) -> Explained | None:
    """The common mistake behind `exc`, or None when it is not one of them."""
    error = _error(exc, text, loader)
    for rule in (
        _tab,
        _unquoted_start,
        _unclosed_quote,
        _missing_colon,
        _colon_in_value,
        _list_item,
        _indentation,
    ):
        found = rule(error)
        if found is not None:
            return found
    return None


def _error(exc: yaml.MarkedYAMLError, text: str, loader: Any) -> _Error:
    def at(mark: Any) -> tuple[int, int] | None:
        return (mark.line, mark.column) if mark is not None else None

    mark = exc.problem_mark
    index = mark.index if mark is not None else len(text)
    char = text[index] if 0 <= index < len(text) else ""
    return _Error(
        exc.context or "",
        exc.problem or "",
        at(exc.context_mark),
        at(mark),
        char,
        _LINE_BREAK.split(text),
        text,
        loader,
    )


def _found(line: int, column: int, message: str) -> Explained:
    return Explained(line + 1, column + 1, message)


def _spaces(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content_column(line: str) -> int:
    """Where a line's content starts, after any `- ` that opens a list item."""
    match = re.match(r"[ \t]*(?:-[ \t]+)*", line)
    return match.end() if match else 0


def _word(line: str, column: int) -> str:
    """The key or word written at `column`, for messages (`type`, `- id`)."""
    found = re.match(r"[^\s:]+", line[column:])
    return found.group() if found else line[column:].strip()


def _line_above(error: _Error, index: int) -> int | None:
    """The nearest line above `index` with content (not blank, not a comment)."""
    for above in range(index - 1, -1, -1):
        stripped = error.line(above).strip()
        if stripped and not stripped.startswith("#"):
            return above
    return None


# -- the rules, most specific first ---------------------------------------------------


def _tab(error: _Error) -> Explained | None:
    if "tab character" not in error.problem and error.char != "\t":
        return None
    if error.problem_at is None:
        return None
    index, column = error.problem_at
    line = error.line(index)
    leading = line[: len(line) - len(line.lstrip(" \t"))]
    if "\t" in leading:
        column = leading.index("\t")
        where = "a tab character in the indentation"
    else:
        where = "a tab character where YAML does not allow one"
    return _found(
        index,
        column,
        f"{where}: YAML indents with spaces only; replace the tab with spaces",
    )


def _unquoted_start(error: _Error) -> Explained | None:
    if "cannot start any token" not in error.problem or error.char not in ("@", "`"):
        return None
    assert error.problem_at is not None
    index, column = error.problem_at
    quoted = _quoted(error.line(index)[column:].split(" #")[0].strip())
    return _found(
        index,
        column,
        f"a value cannot start with {error.char} unless it is quoted: write {quoted}",
    )


def _quoted(value: str) -> str:
    return f"'{value}'" if '"' in value else f'"{value}"'


def _unclosed_quote(error: _Error) -> Explained | None:
    if error.context == "while scanning a quoted scalar" and error.context_at is not None:
        index, column = error.context_at
        ends = "the end of the file" if "end of stream" in error.problem else "a '---' line"
        return _quote_message(error, index, column, f"it runs to {ends}")
    if error.problem_at is None:
        return None
    index, column = error.problem_at
    # The quote closed, but only at the next quote: the string swallowed lines that
    # look like keys, and the parser stopped after it.
    for token in _tokens(error):
        if not isinstance(token, yaml.ScalarToken) or token.style not in ("'", '"'):
            continue
        start, end = token.start_mark, token.end_mark
        if (end.line, end.column) > error.problem_at:
            break
        if start.line != end.line:
            swallowed = error.text[start.index : end.index].splitlines()[1:]
            if any(_KEY_LINE.match(line) for line in swallowed):
                how = f"it runs on to the quote on line {end.line + 1}"
                return _quote_message(error, start.line, start.column, how)
        elif end.line == index and not error.line(index)[end.column : column].strip():
            return _closed_early(error, token)
    return None


def _quote_message(error: _Error, index: int, column: int, how: str) -> Explained:
    quote = error.line(index)[column : column + 1] or '"'
    kind = "double" if quote == '"' else "single"
    return _found(
        index,
        column,
        f"unclosed {kind} quote: the string that starts here has no closing {quote} "
        f"({how}); close it where the value ends",
    )


def _closed_early(error: _Error, token: Any) -> Explained:
    """Text right after a closing quote: the string held a quote of its own."""
    quote = token.style
    inside = "''" if quote == "'" else '\\"'
    index, column = token.end_mark.line, token.end_mark.column - 1
    return _found(
        index,
        column,
        f"this {quote} ends the string, and text follows it: write a {quote} inside a "
        f"{quote}…{quote} string as {inside}" + error.libyaml((index, column)),
    )


def _tokens(error: _Error) -> list[Any]:
    """The tokens libyaml read before the error (all of them after a parser error)."""
    tokens: list[Any] = []
    try:
        for token in yaml.scan(error.text, Loader=error.loader):
            tokens.append(token)
    except yaml.YAMLError:
        pass
    return tokens


def _missing_colon(error: _Error) -> Explained | None:
    if "could not find expected ':'" in error.problem and error.context_at is not None:
        return _colon_message(error, *error.context_at)
    if "mapping values are not allowed" not in error.problem or error.problem_at is None:
        return None
    # A plain value ran on from an earlier line into this `key:`. Unless a key and its
    # colon came just before that value, its first line is a key that lost its colon.
    tokens = _tokens(error)
    last = tokens[-1] if tokens else None
    if not isinstance(last, yaml.ScalarToken) or last.start_mark.line >= error.problem_at[0]:
        return None
    if len(tokens) > 1 and isinstance(tokens[-2], yaml.ValueToken):
        return None  # a value continued on a line indented too deep: `_indentation` says so
    return _colon_message(error, last.start_mark.line, last.start_mark.column)


def _colon_in_value(error: _Error) -> Explained | None:
    if "mapping values are not allowed" not in error.problem or error.problem_at is None:
        return None
    tokens = _tokens(error)
    if len(tokens) < 2 or not isinstance(tokens[-2], yaml.ValueToken):
        return None
    last, (index, column) = tokens[-1], error.problem_at
    if not isinstance(last, yaml.ScalarToken) or last.start_mark.line != index:
        return None
    value = error.line(index)[last.start_mark.column :].split(" #")[0].strip()
    return _found(
        index,
        column,
        "a value that holds ': ' must be quoted, or YAML reads a second key: write "
        + _quoted(value),
    )


def _colon_message(error: _Error, index: int, column: int) -> Explained:
    written = error.line(index)[column:].split(" #")[0].strip()
    key, _, rest = written.partition(" ")
    fixed = f"{key}: {rest.strip()}" if rest.strip() else f"{key}:"
    return _found(
        index,
        column,
        f"missing ':' after the key '{key}': write '{fixed}'" + error.libyaml((index, column)),
    )


def _list_item(error: _Error) -> Explained | None:
    if error.char != "-" or error.problem_at is None:
        return None
    if "did not find expected" not in error.problem:
        return None
    index, column = error.problem_at
    for above in range(index - 1, -1, -1):
        line = error.line(above)
        if line.lstrip(" ").startswith("- ") or line.strip() == "-":
            dash = _spaces(line)
            if dash == column:
                return None
            return _found(
                index,
                column,
                f"a list item at the wrong level: this '-' is in column {column + 1}, but "
                f"the item above it (line {above + 1}) has its '-' in column {dash + 1}; "
                "start every item of a list in the same column" + error.libyaml(error.problem_at),
            )
    return None


def _indentation(error: _Error) -> Explained | None:
    structural = ("mapping values are not allowed", "did not find expected")
    if error.problem_at is None or not any(s in error.problem for s in structural):
        return None
    index = error.problem_at[0]
    line = error.line(index)
    if not _KEY_LINE.match(line):
        return None
    above = _line_above(error, index)
    if above is None:
        return None
    column, sibling = _content_column(line), _content_column(error.line(above))
    if column == sibling:
        return None
    return _found(
        index,
        column,
        f"wrong indentation: '{_word(line, column)}' starts in column {column + 1}, but "
        f"'{_word(error.line(above), sibling)}' on line {above + 1} starts in column "
        f"{sibling + 1}; keys of one mapping start in the same column"
        + error.libyaml((index, column)),
    )
