"""What the page reads from a flow's YAML: description, labels, inputs, triggers, and
the values that must never reach the page (webhook keys).

The deployed source was valid when it was deployed, but the page reads it as plain
data and never fails on it: an odd shape shows as less, not as an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from headwater.daemon import yamlsource
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.flow import registry as reg
from headwater.web.pages.display import redact

WEBHOOK = "core.trigger.Webhook"
SCHEDULE = "core.trigger.Schedule"
PARSED_CACHE = 1024  # parsed sources kept: a source's text is its key, so never stale


@dataclass(frozen=True)
class Trigger:
    id: str
    type: str
    """The short type name (core.trigger.Schedule), or what the file says if unknown."""
    detail: str
    """What fires it, shown beside it: a cron, a flow condition, a path."""


@dataclass(frozen=True)
class FlowSource:
    data: dict[str, Any]
    hidden: tuple[str, ...] = ()
    """Values shown as •••••• wherever they appear (webhook keys)."""
    secret_inputs: frozenset[str] = field(default_factory=frozenset)

    @property
    def description(self) -> str | None:
        value = self.data.get("description")
        return value if isinstance(value, str) else None

    @property
    def labels(self) -> list[tuple[str, str]]:
        return labels_of(self.data.get("labels"))

    @property
    def disabled(self) -> bool:
        return self.data.get("disabled") is True

    @property
    def inputs(self) -> list[dict[str, Any]]:
        found = self.data.get("inputs")
        return [i for i in found if isinstance(i, dict)] if isinstance(found, list) else []

    @property
    def triggers(self) -> list[Trigger]:
        found = self.data.get("triggers")
        items = found if isinstance(found, list) else []
        return [_trigger(t) for t in items if isinstance(t, dict)]

    def shown(self, text: str) -> str:
        return redact(text, self.hidden)


def read(source: str | None, path: str = "flow.yaml") -> FlowSource:
    """The page's view of a flow source (cached by its text)."""
    return _read(source or "", path)


@lru_cache(maxsize=PARSED_CACHE)
def _read(source: str, path: str) -> FlowSource:
    try:
        data = yamlsource.load(source, path).data
    except HeadwaterError:
        data = None
    if not isinstance(data, dict):
        return FlowSource({})
    return FlowSource(data, tuple(_webhook_keys(data)), frozenset(_secret_inputs(data)))


def labels_of(value: Any) -> list[tuple[str, str]]:
    """Labels as (key, value) pairs, from a mapping or Kestra's [{key, value}] list."""
    if isinstance(value, dict):
        return [(str(k), _text(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [
            (str(i.get("key")), _text(i.get("value")))
            for i in value
            if isinstance(i, dict) and "key" in i
        ]
    return []


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def short_type(name: Any, kind: reg.Kind) -> str:
    entry = reg.REGISTRY.resolve(name, kind)
    if entry is not None:
        return entry.short
    return str(name or "?")


def _trigger(raw: dict[str, Any]) -> Trigger:
    kind = short_type(raw.get("type"), "trigger")
    if kind == SCHEDULE:
        detail = str(raw.get("cron") or "")
        if raw.get("timezone"):
            detail += f" ({raw['timezone']})"
    elif kind == WEBHOOK:
        detail = "POST …/executions/webhook/…"
    else:
        detail = ""
    return Trigger(str(raw.get("id") or "?"), kind, detail)


def _webhook_keys(data: dict[str, Any]) -> list[str]:
    found = data.get("triggers")
    keys = []
    for raw in found if isinstance(found, list) else []:
        if isinstance(raw, dict) and short_type(raw.get("type"), "trigger") == WEBHOOK:
            key = raw.get("key")
            if isinstance(key, str | int) and str(key):
                keys.append(str(key))
    return keys


def _secret_inputs(data: dict[str, Any]) -> list[str]:
    found = data.get("inputs")
    return [
        str(i.get("id"))
        for i in (found if isinstance(found, list) else [])
        if isinstance(i, dict) and str(i.get("type") or "").upper() == "SECRET"
    ]
