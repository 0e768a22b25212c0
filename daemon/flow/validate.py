"""Validating one flow file: YAML, structure, per-type rules, expressions.

Every problem is collected (not just the first) and sorted by position. The result
keeps the model when the flow is valid, so callers parse once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from yaml.nodes import ScalarNode

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
    warnings: list[Diagnostic] = field(default_factory=list)
    """Doubts that do not make the flow invalid (severity "warning")."""

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
        start = mark_position(path, doc.root) if doc.root is not None else Position(path, 1, 1)
        result.diagnostics.append(
            Diagnostic(
                start,
                f"a flow file must be a YAML map with id, namespace and tasks; this one is {what}",
            )
        )
        return result
    data = plugindefaults.apply(_old_spellings(doc.data))
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
    found = check_expressions(doc, data)
    diagnostics += [d for d in found if d.severity == "error"]
    result.warnings = sorted({d for d in found if d.severity != "error"}, key=Diagnostic.sort_key)
    result.diagnostics = sorted(set(diagnostics), key=Diagnostic.sort_key)
    result.flow = flow if not result.diagnostics else None
    if result.flow is not None:
        # A valid flow's node graph is only needed again to place an error, which is
        # rare; keeping thousands of graphs costs gigabytes and slows the collector.
        result.source = doc.without_nodes()
    return result


def _old_spellings(flow: dict[str, Any]) -> dict[str, Any]:
    """Kestra's older input form `name:` (for `id:`) read as `id:`."""
    inputs = flow.get("inputs")
    if not isinstance(inputs, list) or not any(
        isinstance(i, dict) and "name" in i and "id" not in i for i in inputs
    ):
        return flow
    renamed = [
        {("id" if k == "name" else k): v for k, v in i.items()}
        if isinstance(i, dict) and "name" in i and "id" not in i
        else i
        for i in inputs
    ]
    return {**flow, "inputs": renamed}


# An output tag with no brace inside ends at its first `}}`, so its validity does not
# depend on the text around it: one known to parse need not be parsed again in
# another string. (Validating 10,000 flows parses each distinct tag once.)
# Strings may appear in it, but without braces or backslashes, so the end is certain.
_SIMPLE_TAG = re.compile(r"""\{\{(?:[^{}'"\\]|'[^'{}\\]*'|"[^"{}\\]*")*\}\}""")
_GOOD_TAGS: dict[str, None] = {}
GOOD_TAGS_KEPT = 65_536


def _known_good(text: str) -> bool:
    tags = _SIMPLE_TAG.findall(text)
    if not tags or not all(tag in _GOOD_TAGS for tag in tags):
        return False
    rest = _SIMPLE_TAG.sub("", text)
    return "{{" not in rest and "{%" not in rest and "{#" not in rest


def _remember_good(text: str) -> None:
    if len(_GOOD_TAGS) > GOOD_TAGS_KEPT:
        _GOOD_TAGS.clear()
    for tag in _SIMPLE_TAG.findall(text):
        _GOOD_TAGS[tag] = None


def check_expressions(doc: SourceDocument, flow: dict[str, Any] | None = None) -> list[Diagnostic]:
    """Every `{{ … }}` in the file must parse; an error points into the string.

    With the (raw) `flow`, the names expressions read are checked against it too
    (contextnames): errors, and warnings (severity "warning") where it is not certain.
    """
    found: list[Diagnostic] = []
    naming: list[ScalarNode] = []
    for node in doc.braced:
        if not is_expression(node.value):
            continue
        if flow is not None and _CHECKED_ROOT.search(node.value):
            naming.append(node)
        if _known_good(node.value):
            continue
        # Here, not at the top: a file with no expression does without the package (issue 12).
        from headwater.daemon import expressions

        try:
            expressions.parse(node.value)
            _remember_good(node.value)
        except expressions.ExpressionSyntaxError as exc:
            path = doc.path_of(node)
            where = format_path(path)
            position = _inner_position(doc, node, exc.offset)
            found.append(
                Diagnostic(position, f"{where}: invalid expression: {exc.message}", field=where)
            )
    if flow is not None and naming:
        found += _check_names(doc, flow, naming)
    return found


# A quick test before parsing for names: the checked roots appear as words.
_CHECKED_ROOT = re.compile(r"\b(?:inputs|outputs|vars|trigger)\b")


def _check_names(
    doc: SourceDocument, flow: dict[str, Any], nodes: list[ScalarNode]
) -> list[Diagnostic]:
    from headwater.daemon import expressions
    from headwater.daemon.flow.contextnames import check_names, paths_of

    paths = paths_of(doc.root, {id(n) for n in nodes})
    parsed: list[tuple[ScalarNode, Path, Any]] = []
    for node in nodes:
        try:
            template = expressions.parse(node.value)
        except expressions.ExpressionSyntaxError:
            continue  # reported above
        parsed.append((node, paths.get(id(node), ()), template.first_keys))
    by_path = {path: node for node, path, _ in parsed}
    found: list[Diagnostic] = []
    for problem in check_names(flow, ((path, keys) for _, path, keys in parsed)):
        where = format_path(problem.path)
        position = _inner_position(doc, by_path[problem.path], problem.offset)
        message = f"{where}: {problem.message}"
        found.append(Diagnostic(position, message, severity=problem.severity, field=where))
    return found


def _inner_position(doc: SourceDocument, node: ScalarNode, offset: int) -> Position:
    """Where character `offset` of a string's value is in the file.

    Block, folded and quoted scalars do not map their text one to one onto the file
    (indentation, folding, escapes), so the text around the offset is looked up in the
    scalar's part of the file; when it cannot be found exactly, the scalar's start is
    the answer.
    """
    value, start = node.value, node.start_mark.index
    region = doc.text[start : node.end_mark.index]
    for width in (24, 12, 6, 3, 1):
        after = value[offset : offset + width]
        before = value[max(0, offset - width) : offset]
        for snippet, shift in ((after, 0), (before, len(before))):
            if not snippet or "\n" in snippet:
                continue
            found = region.find(snippet)
            if found >= 0 and region.find(snippet, found + 1) < 0:
                return _position_of(doc, start + found + shift)
    return mark_position(doc.path, node)


def _position_of(doc: SourceDocument, index: int) -> Position:
    line = doc.text.count("\n", 0, index) + 1
    column = index - (doc.text.rfind("\n", 0, index) + 1) + 1
    return Position(doc.path, line, column)
