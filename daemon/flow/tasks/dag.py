"""core.flow.Dag: tasks ordered by their dependencies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from headwater.daemon.flow.base import Flowable, Model
from headwater.daemon.flow.registry import task
from headwater.daemon.flow.types import NonNegativeInt, Text

if TYPE_CHECKING:
    AnyTask = Any


class DagTask(Model):
    """A task of a Dag and the ids of the Dag's tasks it waits for."""

    task: AnyTask
    """The task."""
    dependsOn: list[Text] | None = None
    """Ids of tasks of the same Dag that must end first."""


@task("core.flow.Dag", old=["io.kestra.core.tasks.flows.Dag"], flowable=True)
class Dag(Flowable):
    """Runs each task when the tasks it depends on have ended."""

    tasks: list[DagTask]
    """The tasks with their dependencies."""
    concurrent: NonNegativeInt = 0
    """How many tasks run at once; 0 means no limit."""

    @classmethod
    def child_lists(cls, raw: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
        entries = raw.get("tasks")
        if isinstance(entries, list):
            for i, entry in enumerate(entries):
                if isinstance(entry, dict) and "task" in entry:
                    yield ("tasks", i, "task"), [entry["task"]]
        if "errors" in raw:
            yield ("errors",), raw["errors"]

    @classmethod
    def check(cls, raw: dict[str, Any], path: Any, report: Any) -> None:
        graph = dag_edges(raw)
        for index, deps in graph.values():
            for j, dep in enumerate(deps):
                if dep not in graph:
                    known = ", ".join(sorted(graph)) or "none"
                    report(
                        (*path, "tasks", index, "dependsOn", j),
                        f"dependsOn '{dep}' is not a task of this Dag (its tasks: {known})",
                    )
        cycle = find_cycle({k: [d for d in v[1] if d in graph] for k, v in graph.items()})
        if cycle:
            index = graph[cycle[0]][0]
            report(
                (*path, "tasks", index, "dependsOn"),
                "Dag has a dependency cycle: " + " -> ".join([*cycle, cycle[0]]),
            )


def dag_edges(raw: dict[str, Any]) -> dict[str, tuple[int, list[str]]]:
    """Task id to (index in `tasks`, ids it depends on), for well-formed entries."""
    graph: dict[str, tuple[int, list[str]]] = {}
    entries = raw.get("tasks")
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        child = entry.get("task") if isinstance(entry, dict) else None
        if isinstance(child, dict) and isinstance(child.get("id"), str):
            deps = entry.get("dependsOn") or []
            graph[child["id"]] = (
                i,
                [d for d in deps if isinstance(d, str)] if isinstance(deps, list) else [],
            )
    return graph


def find_cycle(edges: dict[str, list[str]]) -> list[str]:
    """One cycle of a directed graph as a list of nodes, or [] when there is none."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []
