"""Names that expressions read, checked against what the flow declares.

`{{ inputs.nme }}` parses, and fails only when a task renders it. What can be known
from the file is checked here: the first key after `inputs`, `outputs`, `vars` and
`trigger` against the flow's inputs, task ids, variables and trigger types.

An error where the name is certain not to exist when the expression is rendered; a
warning where it may come from elsewhere (a guard such as `| default` or `??` allows
it to be missing, a trigger that is not this flow's, plugin defaults, which may apply
to triggers as well as tasks). Expressions in triggers see the trigger and the flow,
not the execution: only `trigger` is checked there.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from headwater.daemon.flow import registry as reg
from headwater.daemon.flow.walk import iter_tasks
from headwater.daemon.yamlsource import Path

CHECKED_ROOTS = ("inputs", "outputs", "vars", "trigger")
SUGGESTION_CUTOFF = 0.6  # difflib ratio above which "did you mean" is offered

# What `{{ trigger.* }}` holds for each way an execution starts (daemon/triggers/ and
# the Subflow task build these maps; a new trigger type adds its line here).
TRIGGER_COMMON = ("type", "id")
TRIGGER_VARIABLES: dict[str, tuple[str, ...]] = {
    "core.trigger.Schedule": ("date", "next", "previous", "backfill"),
    "core.trigger.Webhook": ("method", "body", "headers", "parameters"),
    "core.trigger.Flow": (
        "executionId",
        "namespace",
        "flowId",
        "flowRevision",
        "state",
        "outputs",
        "labels",
        "chain",
    ),
    "fs.local.RealtimeTrigger": ("event", "file"),
    "fs.local.Trigger": ("files",),
}
SUBFLOW_TRIGGER = ("type", "executionId", "namespace", "flowId")  # a Subflow task's child

# Where an expression is rendered with the execution's names (inputs, outputs, vars).
_EXECUTION_PARTS = ("tasks", "errors", "finally", "outputs", "inputs", "variables")
_DEFAULTS_PARTS = ("pluginDefaults", "taskDefaults")


@dataclass(frozen=True)
class Problem:
    """A name an expression reads that the flow does not have."""

    path: Path  # the property holding the expression
    offset: int  # where the reference starts in the property's value
    message: str
    severity: str  # "error" or "warning"


@dataclass(frozen=True)
class Declared:
    """What a flow declares; None where it cannot be known from the file."""

    inputs: frozenset[str] | None
    tasks: frozenset[str] | None
    variables: frozenset[str] | None
    triggers: tuple[str, ...] | None  # short type names, in order

    @classmethod
    def of(cls, flow: dict[str, Any]) -> Declared:
        return cls(
            _ids(flow.get("inputs")),
            _task_ids(flow),
            _keys(flow.get("variables")),
            _trigger_types(flow.get("triggers")),
        )


def check_names(
    flow: dict[str, Any],
    found: Iterable[tuple[Path, Iterable[tuple[str, str | None, int, bool]]]],
) -> Iterator[Problem]:
    """Problems of the references `found`: (property path, its first keys) each.

    A first key is (root, key, offset in the property's value, guarded).
    """
    declared: Declared | None = None
    for path, keys in found:
        if path and path[-1] == "description":
            continue  # documentation, never rendered
        for root, key, offset, guarded in keys:
            if root not in CHECKED_ROOTS or key is None:
                continue
            declared = declared or Declared.of(flow)
            found_problem = _check(declared, path, root, key)
            if found_problem is None:
                continue
            message, certain = found_problem
            certain = certain and not guarded and _certain_part(path)
            severity = "error" if certain and not _optional_output(flow, path) else "warning"
            yield Problem(path, offset, f"{root}.{key}: {message}", severity)


def paths_of(root: Node | None, targets: set[int]) -> dict[int, Path]:
    """The value path of each node whose id is in `targets`, in one walk of the graph."""
    found: dict[int, Path] = {}
    stack: list[tuple[Node, Path]] = [(root, ())] if root is not None else []
    while stack and len(found) < len(targets):
        node, path = stack.pop()
        if isinstance(node, ScalarNode):
            if id(node) in targets:
                found[id(node)] = path
        elif isinstance(node, MappingNode):
            stack += [(v, (*path, k.value)) for k, v in node.value]
        elif isinstance(node, SequenceNode):
            stack += [(v, (*path, i)) for i, v in enumerate(node.value)]
    return found


def _optional_output(flow: dict[str, Any], path: Path) -> bool:
    """A flow output with `required: false` may read what is not there: it is left out."""
    if len(path) < 2 or path[0] != "outputs" or not isinstance(path[1], int):
        return False
    outputs = flow.get("outputs")
    if not isinstance(outputs, list) or path[1] >= len(outputs):
        return False
    output = outputs[path[1]]
    return isinstance(output, dict) and output.get("required") is False


def _certain_part(path: Path) -> bool:
    return not path or path[0] not in _DEFAULTS_PARTS


def _check(declared: Declared, path: Path, root: str, key: str) -> tuple[str, bool] | None:
    """(message, certain) when `root.key` may not exist where `path` is rendered."""
    part = path[0] if path else ""
    in_trigger = part == "triggers"
    if root == "trigger":
        own = _own_trigger(declared, path) if in_trigger else declared.triggers
        return _check_trigger(own, key, in_trigger)
    if in_trigger:
        return None  # a trigger's expressions see the trigger and the flow, not the execution
    if part not in _EXECUTION_PARTS and part not in _DEFAULTS_PARTS:
        return None  # labels, concurrency…: not checked
    checks: dict[str, Callable[[Declared, str], str | None]] = {
        "inputs": _check_input,
        "outputs": _check_output,
        "vars": _check_variable,
    }
    message = checks[root](declared, key)
    return (message, True) if message else None


def _check_input(declared: Declared, key: str) -> str | None:
    if declared.inputs is None or key in declared.inputs:
        return None
    if not declared.inputs:
        return f"the flow declares no inputs, so there is no input '{key}'"
    return f"the flow has no input '{key}'{_suggest(key, declared.inputs)}"


def _check_output(declared: Declared, key: str) -> str | None:
    if declared.tasks is None or key in declared.tasks:
        return None
    return f"the flow has no task '{key}'{_suggest(key, declared.tasks)}"


def _check_variable(declared: Declared, key: str) -> str | None:
    if declared.variables is None or key in declared.variables:
        return None
    if not declared.variables:
        return f"the flow declares no variables, so there is no variable '{key}'"
    return f"the flow has no variable '{key}'{_suggest(key, declared.variables)}"


def _check_trigger(
    own: tuple[str, ...] | None, key: str, in_trigger: bool
) -> tuple[str, bool] | None:
    if own is None:
        return None
    given = {*TRIGGER_COMMON, *(k for t in own for k in TRIGGER_VARIABLES.get(t, ()))}
    if not in_trigger:
        given.update(SUBFLOW_TRIGGER)
    if key in given:
        return None
    anywhere = {
        *TRIGGER_COMMON,
        *SUBFLOW_TRIGGER,
        *(k for v in TRIGGER_VARIABLES.values() for k in v),
    }
    if key not in anywhere:
        return f"no trigger gives '{key}'{_suggest(key, given)}", True
    givers = [t for t, keys in TRIGGER_VARIABLES.items() if key in keys]
    which = " or ".join(givers) or "a Subflow task"
    if in_trigger:
        return f"only {which} gives '{key}', and this trigger is {own[0]}", False
    if not own:
        return f"only {which} gives '{key}', and the flow has no trigger", False
    return f"only {which} gives '{key}', and the flow's triggers are {', '.join(own)}", False


def _own_trigger(declared: Declared, path: Path) -> tuple[str, ...] | None:
    if declared.triggers is None or len(path) < 2 or not isinstance(path[1], int):
        return None
    index = path[1]
    return (declared.triggers[index],) if index < len(declared.triggers) else None


def _suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=SUGGESTION_CUTOFF)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _ids(items: Any) -> frozenset[str] | None:
    if items is None:
        return frozenset()
    if not isinstance(items, list):
        return None
    ids = [i.get("id") if isinstance(i, dict) else None for i in items]
    return frozenset(ids) if all(isinstance(i, str) for i in ids) else None  # type: ignore[arg-type]


def _task_ids(flow: dict[str, Any]) -> frozenset[str] | None:
    ids: set[str] = set()
    for _, task in iter_tasks(flow):
        ident = task.get("id")
        if not isinstance(ident, str) or reg.REGISTRY.resolve(task.get("type"), "task") is None:
            return None  # an id or a type that is not known: its children are not either
        ids.add(ident)
    return frozenset(ids)


def _keys(variables: Any) -> frozenset[str] | None:
    if variables is None:
        return frozenset()
    if not isinstance(variables, dict):
        return None
    return frozenset(str(k) for k in variables)


def _trigger_types(triggers: Any) -> tuple[str, ...] | None:
    if triggers is None:
        return ()
    if not isinstance(triggers, list):
        return None
    types: list[str] = []
    for trigger in triggers:
        entry = (
            reg.REGISTRY.resolve(trigger.get("type"), "trigger")
            if isinstance(trigger, dict)
            else None
        )
        if entry is None:
            return None
        types.append(entry.short)
    return tuple(types)
