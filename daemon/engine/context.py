"""The variables expressions see during an execution, and rendering with them.

Context names (FLOWS.md): flow, execution, task, taskrun, parent, parents, inputs,
outputs, vars, labels, trigger, envs. Outputs of tasks inside loops are keyed by the
loop values: `outputs.t[taskrun.value]`.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from headwater.daemon import expressions
from headwater.daemon.engine.sealing import Sealer
from headwater.daemon.engine.secrets import Masker, Secrets
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.flow.base import Task
from headwater.daemon.flow.model import Flow

Row = dict[str, Any]
ENV_PREFIX = "ENV_"


ENVS_CACHED = 64  # environments whose ENV_ variables are remembered (one per engine)
ISO_CACHE_SIZE = 65_536  # formatted times kept: the same execution is read again and again


@functools.lru_cache(maxsize=ISO_CACHE_SIZE)
def iso(ts: float | None) -> str | None:
    """RFC 3339 in UTC with milliseconds, as the API and expressions show times."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_ENVS: dict[int, tuple[Mapping[str, str], int, dict[str, str]]] = {}


def envs(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`ENV_*` variables, lower-cased, without the prefix (Kestra's `envs`).

    Remembered per environment (walking every variable for every task run cost more
    than the rest of its context); a variable added or removed reads them again.
    """
    source = os.environ if environ is None else environ
    found = _ENVS.get(id(source))
    if found is not None and found[0] is source and found[1] == len(source):
        return found[2]
    values = {
        k[len(ENV_PREFIX) :].lower(): v for k, v in source.items() if k.startswith(ENV_PREFIX)
    }
    if len(_ENVS) > ENVS_CACHED:
        _ENVS.clear()
    _ENVS[id(source)] = (source, len(source), values)
    return values


def labels_map(labels: Sequence[Mapping[str, str]] | None) -> dict[str, str]:
    return {item["key"]: item["value"] for item in labels or []}


def outputs_of(runs: Sequence[Row]) -> dict[str, Any]:
    """`outputs` as expressions see it: by task id, nested by loop values inside loops."""
    found: dict[str, Any] = {}
    for run in runs:
        outputs = run.get("outputs")
        if outputs is None:
            continue
        path = run.get("values_path") or []
        if not path:
            found[run["task_id"]] = outputs
            continue
        node = found.setdefault(run["task_id"], {})
        for value in path[:-1]:
            node = node.setdefault(value, {})
        node[path[-1]] = outputs
    return found


def execution_variables(
    flow: Flow,
    execution: Row,
    runs: Sequence[Row],
    environ: Mapping[str, str] | None = None,
    sealer: Sealer | None = None,
) -> dict[str, Any]:
    """The names every render in this execution sees (sealed inputs opened)."""
    inputs = execution.get("inputs") or {}
    return {
        "flow": {
            "id": flow.id,
            "namespace": flow.namespace,
            "revision": execution["flow_revision"],
        },
        "execution": {
            "id": execution["id"],
            "startDate": iso(execution.get("start_date") or execution.get("created_at")),
            "originalId": execution.get("original_id") or execution["id"],
        },
        "inputs": sealer.open_all(inputs) if sealer else inputs,
        "outputs": outputs_of(runs),
        "vars": flow.variables or {},
        "labels": labels_map(execution.get("labels")),
        "trigger": execution.get("trigger") or {},
        "envs": envs(environ),
    }


def run_variables(
    base: Mapping[str, Any], run: Row, task_type: str, parents: Sequence[Row]
) -> dict[str, Any]:
    """`base` plus what belongs to one task run: task, taskrun, parent, parents."""
    parent_views = [
        {
            "taskrun": {"value": p.get("value"), "id": p["id"]},
            "task": {"id": p["task_id"]},
            "outputs": p.get("outputs") or {},
        }
        for p in parents
    ]
    return {
        **base,
        "task": {"id": run["task_id"], "type": task_type},
        "taskrun": {
            "id": run["id"],
            "value": run.get("value"),
            "attemptsCount": max(run.get("attempt") or 0, 1),
            "startDate": iso(run.get("start_date") or run.get("created_at")),
            "parentId": run.get("parent_id"),
        },
        "parent": parent_views[0] if parent_views else None,
        "parents": parent_views,
    }


class Renderer:
    """Renders values with a context; reads secrets through `secrets`, masking what it read."""

    def __init__(
        self,
        secrets: Secrets,
        masker: Masker,
        read: Callable[[str], str] | None = None,
        now: Callable[[], datetime] | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self.secrets = secrets
        self.masker = masker
        self.sealer = sealer
        """Opens sealed inputs for renders (None: inputs are not sealed, as in tests)."""
        self.environ = secrets.environ
        """The environment `envs` comes from: the one secrets are read from."""
        self.read = read
        self.now = now or (lambda: datetime.now(UTC))

    def _context(self, variables: Mapping[str, Any], read: Callable[[str], str] | None) -> Any:
        def secret(name: str) -> str:
            value = self.secrets.get(name)
            self.masker.add([value])
            return value

        return expressions.RenderContext(
            variables=variables,
            secret=secret,
            read=read or self.read,
            now=self.now,
            derived=self.masker.add,
        )

    def render(
        self, value: Any, variables: Mapping[str, Any], read: Callable[[str], str] | None = None
    ) -> Any:
        """Render every string inside `value`; a lone `{{ expr }}` keeps its type."""
        ctx = self._context(variables, read)
        return _render(value, ctx)

    def render_text(
        self, value: Any, variables: Mapping[str, Any], read: Callable[[str], str] | None = None
    ) -> str:
        rendered = self.render(value, variables, read)
        return text_of(rendered)


def _render(value: Any, ctx: expressions.RenderContext) -> Any:
    if isinstance(value, str):
        if not expressions.has_expression(value):
            return value
        return expressions.parse(value).evaluate(ctx)
    if isinstance(value, list):
        return [_render(v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, ctx) for k, v in value.items()}
    return value


def text_of(value: Any) -> str:
    """A rendered value as text: JSON for lists and maps, lower-case booleans."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso(value.timestamp()) or ""
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), default=_json_default)
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value.timestamp())
    return str(value)


def plain(value: Any) -> Any:
    """A rendered value made storable as JSON (datetimes become RFC 3339 text)."""
    if isinstance(value, datetime):
        return iso(value.timestamp())
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def is_true(value: Any) -> bool:
    """Truthiness of a rendered condition (If, runIf, Fail): "false", "", 0, null are false."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "null", "none", "no")
    return expressions.truthy(value)


NAMES_CACHE_SIZE = 4096  # parsed tasks whose referenced names are remembered
_NAMES: dict[int, tuple[Task, frozenset[str]]] = {}


def referenced_names(task: Task) -> frozenset[str]:
    """Context names the task's expressions use (cached per parsed task).

    The cache holds the task itself: an id alone may be reused by another task once
    the first one is freed, and that one would get the wrong names.
    """
    found = _NAMES.get(id(task))
    if found is not None and found[0] is task:
        return found[1]
    names: set[str] = set()
    _collect_names(task.model_dump(by_alias=True), names)
    if len(_NAMES) >= NAMES_CACHE_SIZE:
        _NAMES.clear()
    _NAMES[id(task)] = (task, frozenset(names))
    return frozenset(names)


def _collect_names(value: Any, names: set[str]) -> None:
    if isinstance(value, str):
        if expressions.has_expression(value):
            try:
                names |= expressions.parse(value).names
            except HeadwaterError:
                names.add("outputs")  # it fails when rendered; the full context costs little
    elif isinstance(value, dict):
        for item in value.values():
            _collect_names(item, names)
    elif isinstance(value, list):
        for item in value:
            _collect_names(item, names)
