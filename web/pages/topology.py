"""A flow's tasks drawn as SVG, on the server: runnable tasks are boxes, flowable tasks
are groups around their children, sequences read left to right with arrows, parallel
branches stack, and a Dag's tasks sit in columns by depth with its edges drawn.

The layout is a simple recursive box layout (no graph library, no JavaScript): each
task or list of tasks knows its size, and paints itself at a given corner. Every text
that comes from the flow goes through `escape`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from markupsafe import Markup, escape

from headwater.daemon.flow import registry as reg
from headwater.daemon.flow.tasks.dag import dag_edges

LEAF_WIDTH = 168
LEAF_HEIGHT = 42
GAP_X = 32  # room for an arrow between tasks of a sequence
GAP_Y = 12
PAD = 10
HEADER = 26  # a group's title line
LANE_LABEL = 16  # a branch's name above its tasks
ANCHOR_Y = 21  # where arrows meet a box, from its top (the middle of a leaf)
CHAR_WIDTH = 7.0  # of the 12px labels, to cut text that would overflow
MARGIN = 12
FLOW_LISTS = (("tasks", None), ("errors", "errors"), ("finally", "finally"))
PARALLEL_TYPES = ("core.flow.Parallel", "core.flow.EachParallel")

LaneKind = Literal["row", "column", "dag"]
Paint = Callable[[float, float, list[str]], None]


@dataclass
class TaskNode:
    id: str
    type: str
    flowable: bool
    lanes: list[Lane] = field(default_factory=list)


@dataclass
class Lane:
    """A list of tasks: a sequence (row), parallel branches (column) or a Dag."""

    label: str | None
    tasks: list[TaskNode]
    kind: LaneKind = "row"
    depends: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Box:
    width: float
    height: float
    paint: Paint


# -- the tree of tasks ---------------------------------------------------------------------
def flow_lanes(data: Mapping[str, Any]) -> list[Lane]:
    """The task lists of a flow (its raw, parsed YAML): tasks, errors, finally."""
    lanes = []
    for name, label in FLOW_LISTS:
        tasks = _nodes(data.get(name))
        if tasks:
            lanes.append(Lane(label, tasks))
    return lanes


def _nodes(items: Any) -> list[TaskNode]:
    if not isinstance(items, list):
        return []
    return [_node(item) for item in items if isinstance(item, dict)]


def _node(raw: dict[str, Any]) -> TaskNode:
    entry = reg.REGISTRY.resolve(raw.get("type"), "task")
    kind = entry.short if entry else str(raw.get("type") or "?")
    node = TaskNode(str(raw.get("id") or "?"), kind, bool(entry and entry.flowable))
    if entry is not None and entry.flowable:
        node.lanes = list(_child_lanes(kind, entry, raw))
    return node


def _child_lanes(kind: str, entry: reg.TypeEntry, raw: dict[str, Any]) -> Iterator[Lane]:
    if kind == "core.flow.Dag":
        edges = dag_edges(raw)
        entries = raw.get("tasks")
        listed = entries if isinstance(entries, list) else []
        tasks = _nodes([e.get("task") for e in listed if isinstance(e, dict)])
        yield Lane(None, tasks, "dag", {k: deps for k, (_, deps) in edges.items()})
        if raw.get("errors"):
            yield Lane("errors", _nodes(raw["errors"]))
        return
    child_lists = getattr(entry.model, "child_lists", None)
    if child_lists is None:
        return
    for suffix, tasks in child_lists(raw):
        label = _lane_label(suffix)
        lane_kind: LaneKind = "column" if label is None and kind in PARALLEL_TYPES else "row"
        yield Lane(label, _nodes(tasks), lane_kind)


def _lane_label(suffix: tuple[str | int, ...]) -> str | None:
    if suffix == ("tasks",):
        return None
    if suffix[0] == "cases" and len(suffix) > 1:
        return f"case {suffix[1]}"
    return str(suffix[0])


# -- layout --------------------------------------------------------------------------------
def render(data: Mapping[str, Any], states: Mapping[str, str] | None = None) -> Markup:
    """The flow `data` (parsed YAML) as an SVG; `states` colours tasks by task id."""
    lanes = flow_lanes(data)
    if not lanes:
        return Markup('<p class="muted">This flow has no tasks.</p>')
    body = _lanes(lanes, states or {})
    width, height = body.width + 2 * MARGIN, body.height + 2 * MARGIN
    parts: list[str] = []
    body.paint(MARGIN, MARGIN, parts)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="topology" role="img" '
        f'aria-label="Tasks of the flow" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}">'
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L8,4 L0,8 z" '
        'class="arrowhead"/></marker></defs>' + "".join(parts) + "</svg>"
    )


def _lanes(lanes: Sequence[Lane], states: Mapping[str, str]) -> Box:
    """Lanes stacked top to bottom, each under its label."""
    boxes = [(lane.label, _lane(lane, states)) for lane in lanes]
    width = max(box.width for _, box in boxes)
    height = sum(box.height + (LANE_LABEL if label else 0) for label, box in boxes)
    height += GAP_Y * (len(boxes) - 1)

    def paint(x: float, y: float, out: list[str]) -> None:
        for label, box in boxes:
            if label:
                out.append(f'<text class="lane" x="{x:.0f}" y="{y + 11:.0f}">{_e(label)}</text>')
                y += LANE_LABEL
            box.paint(x, y, out)
            y += box.height + GAP_Y

    return Box(width, height, paint)


def _lane(lane: Lane, states: Mapping[str, str]) -> Box:
    boxes = [_task(task, states) for task in lane.tasks]
    if not boxes:
        return Box(LEAF_WIDTH, LEAF_HEIGHT / 2, lambda x, y, out: None)
    if lane.kind == "column":
        return _column(boxes)
    if lane.kind == "dag":
        return _dag(lane, boxes)
    return _row(boxes)


def _row(boxes: Sequence[Box]) -> Box:
    """A sequence: left to right, an arrow from each task to the next."""
    width = sum(b.width for b in boxes) + GAP_X * (len(boxes) - 1)
    height = max(b.height for b in boxes)

    def paint(x: float, y: float, out: list[str]) -> None:
        for i, box in enumerate(boxes):
            if i:
                out.append(_arrow(x - GAP_X, y + ANCHOR_Y, x, y + ANCHOR_Y))
            box.paint(x, y, out)
            x += box.width + GAP_X

    return Box(width, height, paint)


def _column(boxes: Sequence[Box]) -> Box:
    """Parallel branches: stacked, all starting at once."""
    width = max(b.width for b in boxes)
    height = sum(b.height for b in boxes) + GAP_Y * (len(boxes) - 1)

    def paint(x: float, y: float, out: list[str]) -> None:
        for box in boxes:
            box.paint(x, y, out)
            y += box.height + GAP_Y

    return Box(width, height, paint)


def _dag(lane: Lane, boxes: Sequence[Box]) -> Box:
    """A Dag: tasks in columns by the length of their longest chain of dependencies."""
    ids = [task.id for task in lane.tasks]
    depth = _depths(ids, lane.depends)
    columns: dict[int, list[int]] = {}
    for index, task_id in enumerate(ids):
        columns.setdefault(depth[task_id], []).append(index)
    order = sorted(columns)
    widths = [max(boxes[i].width for i in columns[c]) for c in order]
    heights = [
        sum(boxes[i].height for i in columns[c]) + GAP_Y * (len(columns[c]) - 1) for c in order
    ]
    gap = GAP_X + 16  # curves need a little more room than straight arrows

    def paint(x: float, y: float, out: list[str]) -> None:
        corner: dict[str, tuple[float, float]] = {}
        left = x
        for column, width in zip(order, widths, strict=True):
            top = y
            for index in columns[column]:
                corner[ids[index]] = (left, top)
                top += boxes[index].height + GAP_Y
            left += width + gap
        edges = []
        for task_id in ids:
            for dep in lane.depends.get(task_id, []):
                if dep in corner and dep != task_id:
                    (dx, dy), (tx, ty) = corner[dep], corner[task_id]
                    start = dx + boxes[ids.index(dep)].width
                    edges.append(_curve(start, dy + ANCHOR_Y, tx, ty + ANCHOR_Y))
        out.extend(edges)
        for index, task_id in enumerate(ids):
            boxes[index].paint(*corner[task_id], out)

    return Box(sum(widths) + gap * (len(order) - 1), max(heights), paint)


def _depths(ids: Sequence[str], depends: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Longest chain of dependencies before each task (a cycle, refused at deploy, stops)."""
    known = set(ids)
    depth: dict[str, int] = {}

    def visit(task_id: str, seen: frozenset[str]) -> int:
        if task_id in depth:
            return depth[task_id]
        deps = [d for d in depends.get(task_id, []) if d in known and d not in seen]
        value = 1 + max((visit(d, seen | {d}) for d in deps), default=-1)
        depth[task_id] = value
        return value

    for task_id in ids:
        visit(task_id, frozenset({task_id}))
    return depth


def _task(task: TaskNode, states: Mapping[str, str]) -> Box:
    state = states.get(task.id)
    if not task.flowable:
        return Box(LEAF_WIDTH, LEAF_HEIGHT, lambda x, y, out: out.append(_leaf(task, state, x, y)))
    inner = _lanes(task.lanes, states) if task.lanes else None
    title_width = CHAR_WIDTH * (len(task.id) + len(_kind(task.type)) + 3) + 2 * PAD
    width = max((inner.width if inner else 0) + 2 * PAD, title_width, LEAF_WIDTH)
    height = HEADER + (inner.height + PAD if inner else PAD)

    def paint(x: float, y: float, out: list[str]) -> None:
        out.append(
            f'<g class="group {_state_class(state)}"><title>{_e(task.id)} ({_e(task.type)})'
            f"{_e(_state_note(state))}</title>"
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{width:.0f}" height="{height:.0f}" rx="6"/>'
            f'<text class="id" x="{x + PAD:.0f}" y="{y + 17:.0f}">{_e(task.id)}'
            f'<tspan class="type" dx="6">{_e(_kind(task.type))}</tspan></text></g>'
        )
        if inner is not None:
            inner.paint(x + PAD, y + HEADER, out)

    return Box(width, height, paint)


def _leaf(task: TaskNode, state: str | None, x: float, y: float) -> str:
    room = int((LEAF_WIDTH - 2 * PAD) / CHAR_WIDTH)
    return (
        f'<g class="task {_state_class(state)}"><title>{_e(task.id)} ({_e(task.type)})'
        f"{_e(_state_note(state))}</title>"
        f'<rect x="{x:.0f}" y="{y:.0f}" width="{LEAF_WIDTH}" height="{LEAF_HEIGHT}" rx="4"/>'
        f'<text class="id" x="{x + PAD:.0f}" y="{y + 17:.0f}">{_e(_cut(task.id, room))}</text>'
        f'<text class="type" x="{x + PAD:.0f}" y="{y + 33:.0f}">'
        f"{_e(_cut(_kind(task.type), room + 3))}</text></g>"
    )


def _arrow(x1: float, y1: float, x2: float, y2: float) -> str:
    return (
        f'<line class="edge" x1="{x1 + 3:.0f}" y1="{y1:.0f}" x2="{x2 - 3:.0f}" y2="{y2:.0f}" '
        'marker-end="url(#arrow)"/>'
    )


def _curve(x1: float, y1: float, x2: float, y2: float) -> str:
    bend = (x2 - x1) / 2
    return (
        f'<path class="edge" d="M{x1 + 3:.0f},{y1:.0f} C{x1 + bend:.0f},{y1:.0f} '
        f'{x2 - bend:.0f},{y2:.0f} {x2 - 3:.0f},{y2:.0f}" marker-end="url(#arrow)"/>'
    )


def _kind(type_name: str) -> str:
    """The last part of a type name: Log, Parallel, Commands."""
    return type_name.rsplit(".", 1)[-1]


def _cut(text: str, room: int) -> str:
    return text if len(text) <= room else text[: max(1, room - 1)] + "…"


def _state_class(state: str | None) -> str:
    return f"st-{state.lower()}" if state else "st-none"


def _state_note(state: str | None) -> str:
    return f": {state}" if state else ""


def _e(text: str) -> str:
    return str(escape(text))
