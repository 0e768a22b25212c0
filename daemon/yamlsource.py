"""Reading YAML safely, keeping where every value came from.

Flow files are composed with libyaml (`CSafeLoader`) into a node graph, and values are
built from the nodes here rather than by PyYAML's constructor, for four reasons:

- a duplicate key is an error (PyYAML keeps the last one silently);
- only the standard tags are accepted, never an application tag;
- alias expansion is bounded *before* anything is expanded, so a "billion laughs"
  file is refused in microseconds instead of filling memory;
- mapping keys stay the strings that were written (YAML 1.1 would turn the key `on:`
  of a file trigger into the boolean True).

Positions are not stored per value: an error's position is looked up in the node graph
by the value's path (`SourceDocument.position`), so the happy path pays nothing for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from headwater.daemon import defaults, yamlerrors
from headwater.daemon.errors import Diagnostic, Position, ValidationFailed

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null"))
_TIMESTAMP, _SEQ, _MAP = f"{_TAG}timestamp", f"{_TAG}seq", f"{_TAG}map"
_MERGE = f"{_TAG}merge"
_SCALAR_TAGS = {_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP}

_BaseLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
LIBYAML = _BaseLoader is not yaml.SafeLoader


class Loader(_BaseLoader):  # type: ignore[misc]
    """libyaml's parser with a quicker tag resolver for the common plain string.

    PyYAML resolves each plain scalar by trying the regular expressions registered for
    its first character; most values in a flow start with a character none is
    registered for, and are strings. Resolving them directly saves a fifth of parsing.
    """

    _first_chars = frozenset(k for k in yaml.SafeLoader.yaml_implicit_resolvers if k)
    _words = {"true": _BOOL, "false": _BOOL, "null": _NULL, "~": _NULL}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ScalarNode and implicit[0] and value:
            first = value[0]
            if first not in self._first_chars:
                return _STR
            if first.isalpha():  # only true, false and null are words with a meaning
                return self._words.get(value.lower(), _STR)
            if value.isascii() and value.isdigit():
                return _INT
        return super().resolve(kind, value, implicit)

    # Path resolvers are never registered, so following the path is wasted work.
    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass


_STRUCTURAL = "[{-:?\n"
# An anchor (`&name`) where YAML allows one; `&&` in a shell line is not one. A false
# positive only costs the alias measurement.
_ANCHOR = re.compile(r"(?:^|[\s\[{,:-])&[^\s,\[\]{}&]", re.MULTILINE)

PathItem = str | int
Path = tuple[PathItem, ...]


@dataclass(frozen=True)
class SourceDocument:
    """A parsed YAML file: its plain value and the node graph to find positions in."""

    path: str
    text: str
    data: Any
    root: Node | None
    braced: tuple[ScalarNode, ...] = ()
    """String scalars that hold a `{`, where expressions may be."""

    def node_at(
        self, path: Sequence[PathItem], *, key: bool = False, exact: bool = False
    ) -> Node | None:
        """The node at `path`, or the deepest existing node on the way there.

        With `exact=True`, None when the path does not exist all the way (a value that
        plugin defaults filled in has no node).

        With `key=True` and a path that ends in a mapping key, the key's node is returned
        (an unknown property is reported where its name is written).
        """
        node = self.root
        for i, step in enumerate(path):
            child = _child(node, step, want_key=key and i == len(path) - 1)
            if child is None:
                return None if exact else node
            node = child
        return node

    def without_nodes(self) -> SourceDocument:
        return SourceDocument(self.path, self.text, self.data, None)

    def with_nodes(self) -> SourceDocument:
        """This document with its node graph (parsed again if it was dropped)."""
        return self if self.root is not None or self.data is None else load(self.text, self.path)

    def path_of(self, target: Node) -> Path:
        """The value path of `target` (found by search: for error messages only)."""
        stack: list[tuple[Node, Path]] = [(self.root, ())] if self.root is not None else []
        while stack:
            node, path = stack.pop()
            if node is target:
                return path
            if isinstance(node, MappingNode):
                stack += [(v, (*path, k.value)) for k, v in node.value]
            elif isinstance(node, SequenceNode):
                stack += [(v, (*path, i)) for i, v in enumerate(node.value)]
        return ()

    def position(self, path: Sequence[PathItem] = (), *, key: bool = False) -> Position:
        node = self.node_at(path, key=key)
        if node is None:
            return Position(self.path, 1, 1)
        return mark_position(self.path, node)

    def error(self, path: Sequence[PathItem], message: str, *, key: bool = False) -> Diagnostic:
        return Diagnostic(self.position(path, key=key), message, field=format_path(path))


def mark_position(path: str, node: Node) -> Position:
    return Position(path, node.start_mark.line + 1, node.start_mark.column + 1)


def format_path(path: Sequence[PathItem]) -> str:
    """`("tasks", 2, "retry")` reads `tasks[2].retry`."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


def _child(node: Node | None, step: PathItem, *, want_key: bool) -> Node | None:
    if isinstance(node, MappingNode) and isinstance(step, str):
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == step:
                return k if want_key else v
    elif isinstance(node, SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        child: Node = node.value[step]
        return child
    return None


def load(text: str, path: str) -> SourceDocument:
    """Parse one YAML document; raise `ValidationFailed` with positions on any problem."""
    if len(text.encode("utf-8", "surrogatepass")) > defaults.MAX_FLOW_FILE_BYTES:
        raise _fail(path, 1, 1, f"file is larger than {defaults.MAX_FLOW_FILE_BYTES} bytes")
    try:
        if sum(text.count(c) for c in _STRUCTURAL) > defaults.YAML_DEPTH_PRECHECK_CHARS:
            _check_depth(text, path)
        root = yaml.compose(text, Loader=Loader)
    except yaml.MarkedYAMLError as exc:
        raise _from_yaml_error(exc, text, path) from None
    except yaml.YAMLError as exc:
        raise _fail(path, 1, 1, f"invalid YAML: {exc}") from None
    if root is None:
        return SourceDocument(path, text, None, None)
    builder = _Builder(path)
    if "&" in text and _ANCHOR.search(
        text
    ):  # without an anchor there is no alias, and nothing expands
        builder.measure(root, 0)
    return SourceDocument(path, text, builder.build(root), root, tuple(builder.braced))


def _check_depth(text: str, path: str) -> None:
    """Refuse deep nesting before composing: libyaml's composer recurses on the C stack."""
    depth = 0
    for event in yaml.parse(text, Loader=Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > defaults.MAX_YAML_DEPTH:
                mark = event.start_mark
                line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
                raise _fail(path, line, col, _too_deep())
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _too_deep() -> str:
    return f"YAML nests deeper than {defaults.MAX_YAML_DEPTH} levels"


def _fail(path: str, line: int, column: int, message: str) -> ValidationFailed:
    return ValidationFailed([Diagnostic(Position(path, line, column), message)])


def _from_yaml_error(exc: yaml.MarkedYAMLError, text: str, path: str) -> ValidationFailed:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    parts = [p for p in (exc.context, exc.problem) if p]
    if "maximum nesting depth" in " ".join(parts):  # libyaml 0.2.6 and later stop at 1000
        return _fail(path, line, col, _too_deep())
    if "expected a single document" in " ".join(parts):
        parts = ["a flow file holds exactly one YAML document (found a second '---')"]
    elif (explained := yamlerrors.explain(exc, text, Loader)) is not None:
        line, col, parts = explained.line, explained.column, [explained.message]
    return _fail(path, line, col, "invalid YAML: " + "; ".join(parts))


class _Builder:
    """Turns a node graph into plain values, checking what PyYAML would let through."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sizes: dict[int, int] = {}
        self.braced: list[ScalarNode] = []

    def measure(self, node: Node, depth: int) -> int:
        """Size of `node` with every alias expanded, computed without expanding."""
        known = self.sizes.get(id(node))
        if known is not None:
            if known < 0:
                raise self._error(node, "a YAML alias refers to itself (recursive anchor)")
            return known
        if depth > defaults.MAX_YAML_DEPTH:
            raise self._error(node, _too_deep())
        self.sizes[id(node)] = -1
        size = 1
        for child in _children(node):
            size += self.measure(child, depth + 1)
        if size > defaults.MAX_YAML_NODES:
            raise self._error(
                node,
                f"YAML expands to more than {defaults.MAX_YAML_NODES} values "
                "(anchors and aliases multiply it); refusing to expand it",
            )
        self.sizes[id(node)] = size
        return size

    def build(self, node: Node, depth: int = 0) -> Any:
        if node.__class__ is ScalarNode:
            if node.tag == _STR:  # the common case first
                value = node.value
                if "{" in value:
                    self.braced.append(node)
                return value
            return self._scalar(node)
        if depth > defaults.MAX_YAML_DEPTH:
            raise self._error(node, _too_deep())
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                raise self._bad_tag(node)
            return [self.build(item, depth + 1) for item in node.value]
        if isinstance(node, MappingNode):
            return self._mapping(node, depth)
        raise self._error(node, f"unsupported YAML node {type(node).__name__}")

    def _mapping(self, node: MappingNode, depth: int) -> dict[str, Any]:
        if node.tag != _MAP:
            raise self._bad_tag(node)
        out: dict[str, Any] = {}
        build, depth = self.build, depth + 1
        for key_node, value_node in node.value:
            if key_node.__class__ is not ScalarNode:
                raise self._error(key_node, _bad_key_message(key_node))
            if key_node.tag == _MERGE:
                raise self._error(
                    key_node, "merge keys ('<<') are not supported; write the keys out"
                )
            key = key_node.value
            if key in out:
                raise self._error(
                    key_node,
                    f"duplicate key '{key}' (first written at line {self._line_of_key(node, key)})",
                )
            out[key] = build(value_node, depth)
        return out

    @staticmethod
    def _line_of_key(node: MappingNode, key: str) -> int:
        for k, _ in node.value:
            if k.value == key:
                return int(k.start_mark.line) + 1
        return 0

    def _scalar(self, node: ScalarNode) -> Any:
        tag, value = node.tag, node.value
        if tag == _STR:
            if "{" in value:
                self.braced.append(node)
            return value
        if tag == _TIMESTAMP:
            return value  # dates stay the text that was written, as Kestra reads them
        if tag == _NULL:
            return None
        if tag == _BOOL:
            # YAML 1.2: only true and false are booleans. YAML 1.1 also read yes, no, on
            # and off so (`id: yes`, `country: NO`), which is never what a flow means.
            lowered = value.lower()
            return lowered == "true" if lowered in ("true", "false") else value
        if ":" in value and tag in (_INT, _FLOAT):
            return value  # YAML 1.1 reads 18:00:00 as the number 64800; people mean a time
        if tag == _INT:
            try:
                return int(value)
            except ValueError:
                return yaml.SafeLoader.construct_yaml_int(_CONSTRUCTOR, node)
        if tag == _FLOAT:
            return yaml.SafeLoader.construct_yaml_float(_CONSTRUCTOR, node)
        raise self._bad_tag(node)

    def _bad_tag(self, node: Node) -> ValidationFailed:
        return self._error(node, f"YAML tag '{node.tag}' is not allowed in a flow file")

    def _error(self, node: Node, message: str) -> ValidationFailed:
        return ValidationFailed([Diagnostic(mark_position(self.path, node), message)])


_CONSTRUCTOR = yaml.SafeLoader("")


def _bad_key_message(node: Node) -> str:
    message = "a mapping key must be a plain value, not a list or map"
    if isinstance(node, MappingNode) and node.flow_style:
        message += (
            " (an unquoted {{ … }} reads as a YAML map: quote the value, "
            'e.g. message: "{{ inputs.name }}")'
        )
    return message


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, SequenceNode):
        yield from node.value
    elif isinstance(node, MappingNode):
        for k, v in node.value:
            yield k
            yield v
