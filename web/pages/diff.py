"""A line diff between two revisions of a flow, as rows the template lays out."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

CONTEXT_LINES = 3
Kind = Literal["same", "added", "removed", "hunk"]


@dataclass(frozen=True)
class DiffLine:
    kind: Kind
    old: int | None
    """Line number in the old text (None for an added line)."""
    new: int | None
    text: str


def line_diff(old: str, new: str, context: int = CONTEXT_LINES) -> list[DiffLine]:
    """The changed lines of `old` → `new` with `context` lines around each change; empty
    when the texts are equal."""
    a, b = old.splitlines(), new.splitlines()
    lines: list[DiffLine] = []
    for group in difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(context):
        first, last = group[0], group[-1]
        header = f"@@ -{first[1] + 1},{last[2] - first[1]} +{first[3] + 1},{last[4] - first[3]} @@"
        lines.append(DiffLine("hunk", None, None, header))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines += [DiffLine("same", i + 1, j1 + i - i1 + 1, a[i]) for i in range(i1, i2)]
                continue
            lines += [DiffLine("removed", i + 1, None, a[i]) for i in range(i1, i2)]
            lines += [DiffLine("added", None, j + 1, b[j]) for j in range(j1, j2)]
    return lines


def counts(lines: list[DiffLine]) -> tuple[int, int]:
    """(added, removed) lines."""
    added = sum(1 for line in lines if line.kind == "added")
    return added, sum(1 for line in lines if line.kind == "removed")
