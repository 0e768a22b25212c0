"""Rules that span properties or tasks, run on the raw flow so that every error is found
even where the structure is broken elsewhere.

Per-type rules live with their type (`Model.check`); this module walks the flow, calls
them, and adds the flow-wide rules: unique ids, input dependencies, labels, a flow
calling itself, plugin defaults naming a known type.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from headwater.daemon.flow import registry as reg
from headwater.daemon.flow.inputs import check_input
from headwater.daemon.flow.tasks.dag import find_cycle
from headwater.daemon.flow.walk import iter_tasks
from headwater.daemon.yamlsource import Path, format_path


class Reporter(Protocol):
    def __call__(self, path: Path, message: str, *, key: bool = False) -> None: ...


RESERVED_LABEL_PREFIX = "system_"


def check_flow(flow: dict[str, Any], report: Reporter) -> None:
    """Report every cross-property problem of a raw flow mapping."""
    _check_tasks(flow, report)
    _check_triggers(flow.get("triggers"), report)
    _check_inputs(flow.get("inputs"), report)
    _check_unique(_items(flow.get("outputs"), ("outputs",)), "output", report)
    _check_labels(flow.get("labels"), ("labels",), report)
    _check_plugin_defaults(flow, report)


def _items(value: Any, path: Path) -> list[tuple[Path, dict[str, Any]]]:
    if not isinstance(value, list):
        return []
    return [((*path, i), item) for i, item in enumerate(value) if isinstance(item, dict)]


def _check_unique(
    items: Iterable[tuple[Path, dict[str, Any]]], what: str, report: Reporter
) -> None:
    first: dict[str, Path] = {}
    for path, item in items:
        ident = item.get("id")
        if not isinstance(ident, str):
            continue
        if ident in first:
            report(
                (*path, "id"),
                f"duplicate {what} id '{ident}' (also used by {format_path(first[ident])})",
            )
        else:
            first[ident] = path


def _check_tasks(flow: dict[str, Any], report: Reporter) -> None:
    tasks = list(iter_tasks(flow))
    _check_unique(tasks, "task", report)
    namespace, flow_id = flow.get("namespace"), flow.get("id")
    _check_retry(flow.get("retry"), ("retry",), report)
    for path, task in tasks:
        _check_retry(task.get("retry"), (*path, "retry"), report)
        entry = reg.REGISTRY.resolve(task.get("type"), "task")
        if entry is None:
            continue
        entry.model.check(task, path, report)  # type: ignore[attr-defined]
        if entry.short == "core.flow.Subflow" and (
            task.get("namespace") == namespace and task.get("flowId") == flow_id
        ):
            report(path, f"a flow cannot call itself as a subflow ({namespace}.{flow_id})")
        runner = task.get("taskRunner")
        runner_entry = (
            reg.REGISTRY.resolve(runner.get("type"), "runner") if isinstance(runner, dict) else None
        )
        if runner_entry is not None and isinstance(runner, dict):
            runner_entry.model.check(runner, (*path, "taskRunner"), report)  # type: ignore[attr-defined]


def _check_retry(retry: Any, path: Path, report: Reporter) -> None:
    if isinstance(retry, dict) and not any(
        k in retry for k in ("maxAttempts", "maxAttempt", "maxDuration")
    ):
        report(path, "retry needs maxAttempts or maxDuration, or it would retry for ever")


def _check_triggers(triggers: Any, report: Reporter) -> None:
    items = _items(triggers, ("triggers",))
    _check_unique(items, "trigger", report)
    for path, trigger in items:
        entry = reg.REGISTRY.resolve(trigger.get("type"), "trigger")
        if entry is not None:
            entry.model.check(trigger, path, report)  # type: ignore[attr-defined]
        _check_labels(trigger.get("labels"), (*path, "labels"), report)


def _check_inputs(inputs: Any, report: Reporter) -> None:
    items = _items(inputs, ("inputs",))
    for path, item in items:
        check_input(item, path, report)
    _check_unique(items, "input", report)
    ids = {item.get("id"): path for path, item in items if isinstance(item.get("id"), str)}
    edges: dict[str, list[str]] = {}
    for path, item in items:
        depends = item.get("dependsOn")
        names = depends.get("inputs") if isinstance(depends, dict) else None
        if not isinstance(names, list) or not isinstance(item.get("id"), str):
            continue
        edges[item["id"]] = [n for n in names if n in ids]
        for j, name in enumerate(names):
            if name not in ids:
                report(
                    (*path, "dependsOn", "inputs", j),
                    f"input '{item['id']}' depends on '{name}', which is not an input of this flow",
                )
    cycle = find_cycle(edges)
    if cycle:
        report(
            (*ids[cycle[0]], "dependsOn"),
            "inputs depend on each other in a cycle: " + " -> ".join([*cycle, cycle[0]]),
        )


def _check_labels(labels: Any, path: Path, report: Reporter) -> None:
    keys: list[tuple[Path, Any, bool]] = []
    if isinstance(labels, dict):
        keys = [((*path, k), k, True) for k in labels]
    elif isinstance(labels, list):
        keys = [((*path, i, "key"), item.get("key"), False) for i, item in _indexed(labels)]
    for where, key, is_key in keys:
        if isinstance(key, str) and key.startswith(RESERVED_LABEL_PREFIX):
            report(
                where,
                f"label '{key}' uses the reserved prefix '{RESERVED_LABEL_PREFIX}' "
                "(Headwater sets those labels itself)",
                key=is_key,
            )


def _indexed(items: list[Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]


def _check_plugin_defaults(flow: dict[str, Any], report: Reporter) -> None:
    from headwater.daemon.flow.plugindefaults import known_prefix

    for key in ("pluginDefaults", "taskDefaults"):
        for path, item in _items(flow.get(key), (key,)):
            name = item.get("type")
            if isinstance(name, str) and not known_prefix(name):
                report((*path, "type"), f"pluginDefaults type '{name}' matches no known type")
