"""`pluginDefaults` (and the older `taskDefaults`): default property values by type."""

from __future__ import annotations

import copy
from typing import Any

from headwater.daemon.flow import registry as reg
from headwater.daemon.flow.walk import iter_tasks


def apply(flow: dict[str, Any]) -> dict[str, Any]:
    """The flow with defaults filled into its tasks and triggers (a copy when any apply).

    A default matches a task whose type is the same type under any of its names, or
    whose full type name starts with the default's `type` followed by a dot (so
    `io.kestra.plugin.scripts` covers every script task). A value the task sets wins,
    unless the default is `forced`. Maps are merged key by key.
    """
    entries = _entries(flow)
    if not entries:
        return flow
    flow = copy.deepcopy(flow)
    targets = [task for _, task in iter_tasks(flow)]
    targets += [t for t in flow.get("triggers") or [] if isinstance(t, dict)]
    for target in targets:
        for entry in entries:
            if matches(entry["type"], target.get("type")):
                _merge(target, entry["values"], forced=entry.get("forced") is True)
    return flow


def _entries(flow: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for key in ("pluginDefaults", "taskDefaults"):
        items = flow.get(key)
        if isinstance(items, list):
            found += [
                d
                for d in items
                if isinstance(d, dict)
                and isinstance(d.get("type"), str)
                and isinstance(d.get("values"), dict)
            ]
    return found


def matches(default_type: str, type_name: Any) -> bool:
    entry = reg.REGISTRY.resolve(type_name)
    if entry is None:
        return False
    if reg.REGISTRY.resolve(default_type) is entry:
        return True
    prefix = default_type.rstrip(".") + "."
    return any(name.startswith(prefix) for name in entry.names)


def _merge(target: dict[str, Any], values: dict[str, Any], *, forced: bool) -> None:
    for key, value in values.items():
        if key in ("id", "type"):
            continue
        current = target.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            _merge(current, value, forced=forced)
        elif key not in target or forced:
            target[key] = copy.deepcopy(value)


KINDS: tuple[reg.Kind, ...] = ("task", "trigger", "condition", "runner")


def known_prefix(name: str) -> bool:
    """True when `name` is a type name or a dotted prefix of one."""
    if reg.REGISTRY.resolve(name) is not None:
        return True
    prefix = name.rstrip(".") + "."
    return any(
        n.startswith(prefix) for kind in KINDS for e in reg.REGISTRY.entries(kind) for n in e.names
    )
