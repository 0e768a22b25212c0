"""Flow models by revision, parsed once: revisions never change, so caching is safe."""

from __future__ import annotations

import threading
from collections import OrderedDict

from headwater.daemon.errors import HeadwaterError, ValidationFailed
from headwater.daemon.flow.base import Task
from headwater.daemon.flow.model import Flow
from headwater.daemon.flow.tasks.dag import DagTask
from headwater.daemon.flow.validate import validate_text
from headwater.daemon.flow.walk import FLOW_TASK_LISTS
from headwater.daemon.store.store import Store

CACHE_SIZE = 2048  # parsed revisions kept in memory


class FlowNotFound(HeadwaterError):
    pass


class FlowCache:
    def __init__(self, store: Store, size: int = CACHE_SIZE) -> None:
        self.store = store
        self.size = size
        self._cache: OrderedDict[tuple[str, str, int], tuple[Flow, dict[str, Task]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, namespace: str, flow_id: str, revision: int) -> Flow:
        return self._entry(namespace, flow_id, revision)[0]

    def task(self, namespace: str, flow_id: str, revision: int, task_id: str) -> Task:
        tasks = self._entry(namespace, flow_id, revision)[1]
        try:
            return tasks[task_id]
        except KeyError:
            raise FlowNotFound(
                f"task {task_id} is not in {namespace}.{flow_id} revision {revision}"
            ) from None

    def _entry(self, namespace: str, flow_id: str, revision: int) -> tuple[Flow, dict[str, Task]]:
        key = (namespace, flow_id, revision)
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found
        with self.store.read() as tx:
            row = tx.revision(namespace, flow_id, revision)
        if row is None:
            raise FlowNotFound(f"flow {namespace}.{flow_id} revision {revision} does not exist")
        parsed = parse_flow(row["source"], f"{namespace}/{flow_id}.yaml")
        entry = (parsed, index_tasks(parsed))
        with self._lock:
            self._cache[key] = entry
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return entry


def parse_flow(source: str, path: str) -> Flow:
    result = validate_text(source, path)
    if result.flow is None:
        raise ValidationFailed(result.diagnostics)
    return result.flow


def index_tasks(flow: Flow) -> dict[str, Task]:
    """Every task of a flow by id (ids are unique across nesting)."""
    found: dict[str, Task] = {}

    def visit(tasks: list[Task] | None) -> None:
        for task in tasks or []:
            found[task.id] = task
            for name in ("tasks", "then", "else_", "defaults", "errors"):
                children = getattr(task, name, None)
                if isinstance(children, list):
                    visit([c.task if isinstance(c, DagTask) else c for c in children])
            cases = getattr(task, "cases", None)
            if isinstance(cases, dict):
                for branch in cases.values():
                    visit(branch)

    for name in FLOW_TASK_LISTS:
        visit(getattr(flow, "finally_" if name == "finally" else name))
    return found
