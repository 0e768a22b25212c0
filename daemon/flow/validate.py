"""Validating one flow file: YAML, structure, per-type rules, expressions.

Every problem is collected (not just the first) and sorted by position. The result
keeps the model when the flow is valid, so callers parse once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from yaml.nodes import ScalarNode

from headwater.daemon import expressions
from headwater.daemon.errors import Diagnostic, Position, ValidationFailed
from headwater.daemon.flow import plugindefaults
from headwater.daemon.flow.checks import check_flow
from headwater.daemon.flow.diagnose import translate
from headwater.daemon.flow.model import Flow
from headwater.daemon.flow.types import describe, is_expression
from headwater.daemon.yamlsource import Path, SourceDocument, format_path, load, mark_position


@dataclass
class FlowFile:
    """A flow file after validation: its model when valid, and every problem found."""

    path: str
    source: SourceDocument | None
    flow: Flow | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.diagnostics and self.flow is not None

    @property
    def raw(self) -> Any:
        return self.source.data if self.source else None


def validate_text(text: str, path: str) -> FlowFile:
    """Validate the text of one flow file; `path` is how messages name it."""
    try:
        doc = load(text, path)
    except ValidationFailed as failed:
        return FlowFile(path, None, None, failed.diagnostics)
    result = FlowFile(path, doc)
    if not isinstance(doc.data, dict):
        what = "empty" if doc.data is None else f"{describe(doc.data)}, not a map"
        result.diagnostics.append(
            Diagnostic(
                Position(path, 1, 1),
                f"a flow file must be a YAML map with id, namespace and tasks; this one is {what}",
            )
        )
        return result
    data = plugindefaults.apply(doc.data)
    diagnostics: list[Diagnostic] = []

    def report(path: Path, message: str, *, key: bool = False) -> None:
        label = format_path(path) or "the flow"
        diagnostics.append(doc.error(path, f"{label}: {message}", key=key))

    try:
        flow: Flow | None = Flow.model_validate(data)
    except ValidationError as exc:
        flow = None
        diagnostics += translate(exc.errors(), doc, data, Flow)
    check_flow(data, report)
    diagnostics += check_expressions(doc)
    result.diagnostics = sorted(set(diagnostics), key=Diagnostic.sort_key)
    result.flow = flow if not result.diagnostics else None
    return result


def check_expressions(doc: SourceDocument) -> list[Diagnostic]:
    """Every `{{ … }}` in the file must parse; an error points into the string."""
    found: list[Diagnostic] = []
    for node in doc.braced:
        if not is_expression(node.value):
            continue
        try:
            expressions.parse(node.value)
        except expressions.ExpressionSyntaxError as exc:
            path = doc.path_of(node)
            where = format_path(path)
            position = _inner_position(doc, node, exc.line, exc.column)
            found.append(
                Diagnostic(position, f"{where}: invalid expression: {exc.message}", field=where)
            )
    return found


def _inner_position(doc: SourceDocument, node: ScalarNode, line: int, column: int) -> Position:
    """Where line/column of a string's own text is in the file, as near as YAML allows."""
    base = mark_position(doc.path, node)
    style = node.style
    if style in ("|", ">"):
        file_line = node.start_mark.line + 1 + line  # 0-based: the body starts a line below
        lines = doc.text.splitlines()
        if file_line < len(lines):
            text = lines[file_line]
            indent = len(text) - len(text.lstrip(" "))
            return Position(doc.path, file_line + 1, indent + column)
        return base
    if line == 1:
        quote = 1 if style in ("'", '"') else 0
        return Position(doc.path, base.line, base.column + quote + column - 1)
    return Position(doc.path, base.line + line - 1, column)
