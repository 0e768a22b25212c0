"""Secrets a flow names that this daemon does not have: warnings at deploy (issue 15).

A flow reads `secret('NAME')` when a task runs or a trigger renders, so a secret that is
not set goes unnoticed until then: a webhook trigger answers 404 to every call, a task
fails. A deploy looks for the literal names in `secret(...)` calls anywhere in each
changed flow's source and warns of the ones not set; the commit still deploys. A warning
is a `Diagnostic` of severity "warning" (where the call is written) kept as JSON with
the flow and the secret's name, so pages and the API can filter it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from headwater.daemon.errors import Diagnostic, Position
from headwater.daemon.flow import registry as reg
from headwater.daemon.flow.validate import FlowFile
from headwater.daemon.store.store import Row
from headwater.daemon.yamlsource import PathItem, format_path

SECRET_CALL = re.compile(r"""\bsecret\(\s*(['"])([^'"\s]+)\1\s*\)""")
"""A `secret('NAME')` call with a literal name (a computed name cannot be checked)."""
WEBHOOK_TRIGGER = "core.trigger.Webhook"

IsSet = Callable[[str], bool]
Key = tuple[str, str]


def secret_calls(
    raw: Any, path: tuple[PathItem, ...] = ()
) -> Iterator[tuple[tuple[PathItem, ...], str]]:
    """(value path, secret name) of every literal `secret('NAME')` call in a raw flow."""
    if isinstance(raw, str):
        if "secret(" in raw:
            for match in SECRET_CALL.finditer(raw):
                yield path, match.group(2)
    elif isinstance(raw, dict):
        for key, value in raw.items():
            yield from secret_calls(value, (*path, str(key)))
    elif isinstance(raw, list):
        for index, value in enumerate(raw):
            yield from secret_calls(value, (*path, index))


def consequence(raw: Any, path: tuple[PathItem, ...]) -> str:
    """What goes wrong while the secret at `path` is missing."""
    if len(path) >= 2 and path[0] == "triggers" and isinstance(path[1], int):
        trigger = raw["triggers"][path[1]]
        if isinstance(trigger, dict) and _is_webhook(trigger.get("type")):
            return f"the webhook trigger '{trigger.get('id')}' answers 404 until it is"
    return "tasks that read it fail"


def _is_webhook(type_name: object) -> bool:
    entry = reg.REGISTRY.resolve(type_name, "trigger")
    if entry is not None:
        return entry.short == WEBHOOK_TRIGGER
    return isinstance(type_name, str) and type_name.endswith("trigger.Webhook")


def missing_secrets(namespace: str, flow_id: str, flow: FlowFile, is_set: IsSet) -> list[Row]:
    """Warnings (JSON) for the secrets `flow` names that are not set, one per call."""
    return [
        warning_json(namespace, flow_id, name, diagnostic)
        for name, diagnostic in missing_secret_diagnostics(flow, is_set)
    ]


def missing_secret_diagnostics(flow: FlowFile, is_set: IsSet) -> list[tuple[str, Diagnostic]]:
    """(secret name, warning) for each call in `flow` of a secret that is not set."""
    raw = flow.raw
    calls = [(p, name) for p, name in secret_calls(raw) if not is_set(name)]
    if not calls or flow.source is None:
        return []
    doc = flow.source.with_nodes()
    found = []
    for path, name in calls:
        message = f"secret '{name}' is not set: {consequence(raw, path)}"
        found.append((name, Diagnostic(doc.position(path), message, "warning", format_path(path))))
    return found


def as_diagnostic(warning: Row) -> Diagnostic:
    """A stored or served warning as the `Diagnostic` it was made from."""
    position = Position(str(warning.get("path")), int(warning["line"]), int(warning["column"]))
    return Diagnostic(position, str(warning["message"]), "warning", str(warning.get("field", "")))


def warning_json(namespace: str, flow_id: str, name: str, diagnostic: Diagnostic) -> Row:
    return {**diagnostic.to_json(), "namespace": namespace, "flowId": flow_id, "secret": name}


def still_missing(warnings: Iterable[Row], is_set: IsSet, drop: set[Key]) -> list[Row]:
    """The warnings of flows not in `drop` whose secret is still not set."""
    return [
        w
        for w in warnings
        if (w.get("namespace"), w.get("flowId")) not in drop and not is_set(str(w.get("secret")))
    ]


def of_flow(warnings: Iterable[Row] | None, namespace: str, flow_id: str) -> list[Row]:
    return [
        w for w in warnings or [] if (w.get("namespace"), w.get("flowId")) == (namespace, flow_id)
    ]
