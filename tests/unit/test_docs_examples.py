"""docs/flows.md stays true: every example validates, and every type has an example.

Each ```yaml block of the guide is one of these, told apart by its first line:

- ``# fragment: tasks``, ``# fragment: triggers``, ``# fragment: inputs``: a YAML list
  written at column 0. It is wrapped into a minimal flow under that key (the flow gets
  a placeholder task when the fragment is not the tasks) and must validate like a
  complete flow.
- ``# fragment``: a piece that cannot stand in a flow. Its test is skipped, explicitly,
  with the block's line in the reason (the guide uses none today).
- ``# broken: NAME.yaml``: a file with mistakes, followed in the guide by a ```text
  block showing what `headwater validate NAME.yaml` prints. Its diagnostics must be
  exactly the lines of that block that start with ``NAME.yaml:``.
- anything else must be a complete flow (top-level ``id:``, ``namespace:`` and
  ``tasks:``) and validate with no diagnostics. A block that is neither is an error:
  mark it.

Besides, every registered task, trigger, condition and runner type must appear by its
short or full name as a ``type:`` in a checked block, every input type likewise, and
every name of every type (short, full and older ones) must be written somewhere in the
guide (the appendix lists them).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from headwater.daemon.errors import Diagnostic
from headwater.daemon.flow import plugindefaults
from headwater.daemon.flow import registry as reg
from headwater.daemon.flow.inputs import INPUT_TYPE_NAMES
from headwater.daemon.flow.model import Flow
from headwater.daemon.flow.validate import FlowFile, validate_text

DOC = Path(__file__).resolve().parents[2] / "docs" / "flows.md"
KINDS: tuple[reg.Kind, ...] = ("task", "trigger", "condition", "runner")

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
FRAGMENT = re.compile(r"#\s*fragment(?::\s*(\w+))?\s*$")
BROKEN = re.compile(r"#\s*broken:\s*(\S+)\s*$")

HEADER = "id: docs_fragment\nnamespace: docs.examples\n"
PLACEHOLDER_TASKS = (
    "tasks:\n  - id: docs_fragment_task\n    type: core.log.Log\n    message: wrapped\n"
)
WRAPPERS = {
    "tasks": HEADER + "tasks:\n{body}",
    "triggers": HEADER + PLACEHOLDER_TASKS + "triggers:\n{body}",
    "inputs": HEADER + PLACEHOLDER_TASKS + "inputs:\n{body}",
}


@dataclass(frozen=True)
class Block:
    number: int  # 1-based among all fenced blocks of the guide
    line: int  # line of the opening fence in docs/flows.md
    lang: str
    text: str
    next_text: str | None = None  # the block right after, when it is a ```text block

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0]

    @property
    def label(self) -> str:
        return f"docs/flows.md#{self.number}"

    def describe(self) -> str:
        return f"{self.label} (line {self.line}: {self.first_line!r})"


def _blocks() -> list[Block]:
    doc = DOC.read_text(encoding="utf-8")
    found = [
        (m.group(1), m.group(2), doc.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(doc)
    ]
    blocks = []
    for i, (lang, text, line) in enumerate(found):
        following = found[i + 1] if i + 1 < len(found) else None
        next_text = following[1] if following and following[0] == "text" else None
        blocks.append(Block(i + 1, line, lang, text, next_text))
    return blocks


BLOCKS = _blocks()
YAML_BLOCKS = [b for b in BLOCKS if b.lang == "yaml"]


def _kind(block: Block) -> tuple[str, str | None]:
    """('fragment', key), ('skip', None), ('broken', file name) or ('flow', None)."""
    first = block.first_line.strip()
    fragment = FRAGMENT.fullmatch(first)
    if fragment:
        return ("fragment", fragment.group(1)) if fragment.group(1) else ("skip", None)
    broken = BROKEN.fullmatch(first)
    if broken:
        return "broken", broken.group(1)
    return "flow", None


def _is_complete_flow(text: str) -> bool:
    keys = {m.group(1) for m in re.finditer(r"^([A-Za-z_]\w*):", text, re.MULTILINE)}
    return {"id", "namespace", "tasks"} <= keys


def _flow_text(block: Block) -> str | None:
    """The text to validate for a block that must be valid; None when it is skipped."""
    kind, key = _kind(block)
    if kind == "skip":
        return None
    if kind == "fragment":
        assert key in WRAPPERS, (
            f"{block.describe()}: unknown fragment kind {key!r}; "
            f"use one of {', '.join(f'# fragment: {k}' for k in WRAPPERS)} or '# fragment'"
        )
        body = block.text if block.text.endswith("\n") else block.text + "\n"
        return WRAPPERS[key].format(body=body)
    assert _is_complete_flow(block.text), (
        f"{block.describe()}: not a complete flow (top-level id, namespace and tasks); "
        "start it with '# fragment: tasks' (or triggers, inputs), '# fragment' or '# broken: NAME'"
    )
    return block.text


# What a name an expression reads is missing from its flow says (contextnames): a
# fragment stands in a flow that has the inputs, variables and tasks it reads.
NAME_MISSING = re.compile(r"^\S+: (inputs|outputs|vars|trigger)\.\S+: ")


@functools.cache
def _validated(block: Block) -> FlowFile:
    text = _flow_text(block)
    assert text is not None
    result = validate_text(text, block.label)
    if _kind(block)[0] == "fragment" and result.diagnostics:
        result.diagnostics = [d for d in result.diagnostics if not NAME_MISSING.match(d.message)]
        if not result.diagnostics:
            result.flow = Flow.model_validate(plugindefaults.apply(result.raw))
    return result


def _checked() -> Iterator[tuple[Block, FlowFile]]:
    """Blocks that are validated, with their results (unmarked pieces fail elsewhere)."""
    for block in YAML_BLOCKS:
        kind = _kind(block)[0]
        if kind == "fragment" or (kind == "flow" and _is_complete_flow(block.text)):
            yield block, _validated(block)


def _param(block: Block) -> Any:
    return pytest.param(block, id=f"block{block.number:02d}-line{block.line}")


VALID = [_param(b) for b in YAML_BLOCKS if _kind(b)[0] in ("flow", "fragment", "skip")]
BROKEN_BLOCKS = [_param(b) for b in YAML_BLOCKS if _kind(b)[0] == "broken"]


def test_the_guide_has_examples() -> None:
    assert len(VALID) >= 30, f"only {len(VALID)} checked examples in {DOC}"
    assert len(BROKEN_BLOCKS) >= 4, "the 'What is an error' section lost its examples"


@pytest.mark.parametrize("block", VALID)
def test_example_validates(block: Block) -> None:
    if _kind(block)[0] == "skip":
        pytest.skip(f"{block.describe()} is marked '# fragment': not validated")
    result = _validated(block)
    problems = "\n".join(str(d) for d in result.diagnostics)
    assert not result.diagnostics, f"{block.describe()} does not validate:\n{problems}"
    assert result.flow is not None, f"{block.describe()}: validated but built no flow"


@pytest.mark.parametrize("block", BROKEN_BLOCKS)
def test_broken_example_shows_its_real_errors(block: Block) -> None:
    name = _kind(block)[1]
    assert name is not None
    assert block.next_text is not None, (
        f"{block.describe()}: a '# broken:' block must be followed by a ```text block "
        "with the output of headwater validate"
    )
    shown = [line for line in block.next_text.splitlines() if line.startswith(f"{name}:")]
    result = validate_text(block.text, name)
    assert result.diagnostics, f"{block.describe()}: marked broken but has no errors"
    both = sorted([*result.diagnostics, *result.warnings], key=Diagnostic.sort_key)
    actual = [str(d) for d in both]
    assert shown == actual, (
        f"{block.describe()}: the guide shows other errors than validate prints.\n"
        "shown:\n" + "\n".join(shown) + "\nactual:\n" + "\n".join(actual)
    )


def _types_used(value: Any, under_inputs: bool = False) -> Iterator[tuple[str, bool]]:
    """Every (`type:` value, whether it is an input's) in a raw flow."""
    if isinstance(value, dict):
        kind = value.get("type")
        if isinstance(kind, str):
            yield kind, under_inputs
        for key, child in value.items():
            yield from _types_used(child, under_inputs=key == "inputs" and isinstance(child, list))
    elif isinstance(value, list):
        for child in value:
            yield from _types_used(child, under_inputs)


@functools.cache
def _used_names() -> tuple[set[str], set[str]]:
    types: set[str] = set()
    inputs: set[str] = set()
    for _, result in _checked():
        for name, is_input in _types_used(result.raw):
            (inputs if is_input else types).add(name)
    return types, inputs


@pytest.mark.parametrize("kind", KINDS)
def test_every_type_has_an_example(kind: reg.Kind) -> None:
    used, _ = _used_names()
    missing = [
        e.short for e in reg.REGISTRY.entries(kind) if e.short not in used and e.full not in used
    ]
    assert not missing, (
        f"no checked example in docs/flows.md uses these {kind} types (short or full name): "
        + ", ".join(missing)
    )


def test_every_input_type_has_an_example() -> None:
    _, used = _used_names()
    missing = [name for name in INPUT_TYPE_NAMES if name not in used]
    assert not missing, "no checked example in docs/flows.md has inputs of type: " + ", ".join(
        missing
    )


@pytest.mark.parametrize("kind", KINDS)
def test_every_type_name_is_written_down(kind: reg.Kind) -> None:
    doc = DOC.read_text(encoding="utf-8")
    missing = [
        name for e in reg.REGISTRY.entries(kind) for name in e.names if f"`{name}`" not in doc
    ]
    assert not missing, (
        f"docs/flows.md does not mention these {kind} type names (add them to the appendix): "
        + ", ".join(missing)
    )
