"""The one place a `type:` string becomes a model.

Every task, trigger, condition and task-runner type is registered once, with its
short name (`core.log.Log`); the full name is `io.kestra.plugin.` + short, and older
Kestra names are listed beside it. A type is data: its module defines a pydantic model
and registers it with a decorator, nothing else.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, TypeVar

from pydantic import BaseModel

from headwater.daemon import defaults

Kind = Literal["task", "trigger", "condition", "runner"]
FULL_PREFIX = "io.kestra.plugin."
M = TypeVar("M", bound=type[BaseModel])


@dataclass(frozen=True)
class TypeEntry:
    kind: Kind
    short: str
    model: type[BaseModel]
    old: tuple[str, ...] = ()
    flowable: bool = False

    @property
    def full(self) -> str:
        return FULL_PREFIX + self.short

    @property
    def names(self) -> tuple[str, ...]:
        return (self.full, self.short, *self.old)


class Registry:
    def __init__(self) -> None:
        self._by_name: dict[str, TypeEntry] = {}
        self._entries: list[TypeEntry] = []

    def add(self, entry: TypeEntry) -> None:
        for name in entry.names:
            if name in self._by_name:
                raise ValueError(f"type name {name!r} is registered twice")
            self._by_name[name] = entry
        self._entries.append(entry)

    def resolve(self, name: object, kind: Kind | None = None) -> TypeEntry | None:
        entry = self._by_name.get(name) if isinstance(name, str) else None
        if entry is None or (kind is not None and entry.kind != kind):
            return None
        return entry

    def entries(self, kind: Kind) -> list[TypeEntry]:
        """Entries of a kind, by short name (not by import order, which varies)."""
        return sorted((e for e in self._entries if e.kind == kind), key=lambda e: e.short)

    def suggest(self, name: str, kind: Kind, limit: int = 3) -> list[str]:
        """Nearest known type names: same short name first, then by spelling."""
        entries = self.entries(kind)
        tail = name.rsplit(".", 1)[-1].lower()
        same_tail = [e.short for e in entries if e.short.rsplit(".", 1)[-1].lower() == tail]
        shorts = [e.short for e in entries]
        close = difflib.get_close_matches(
            name.removeprefix(FULL_PREFIX), shorts, n=limit, cutoff=defaults.TYPE_SUGGESTION_CUTOFF
        )
        return _unique([*same_tail, *close])[:limit]


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


REGISTRY = Registry()


def register(
    kind: Kind, short: str, *, old: Iterable[str] = (), flowable: bool = False
) -> Callable[[M], M]:
    """Class decorator: make `model` the meaning of `short`, its full and its old names."""

    def decorate(model: M) -> M:
        REGISTRY.add(TypeEntry(kind, short, model, tuple(old), flowable))
        return model

    return decorate


def task(short: str, *, old: Iterable[str] = (), flowable: bool = False) -> Callable[[M], M]:
    return register("task", short, old=old, flowable=flowable)


def trigger(short: str, *, old: Iterable[str] = ()) -> Callable[[M], M]:
    return register("trigger", short, old=old)


def condition(short: str, *, old: Iterable[str] = ()) -> Callable[[M], M]:
    return register("condition", short, old=old)


def runner(short: str, *, old: Iterable[str] = ()) -> Callable[[M], M]:
    return register("runner", short, old=old)
