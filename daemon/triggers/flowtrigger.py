"""core.trigger.Flow: start a flow when executions of other flows end.

`FlowTriggers.on_end` runs inside the transaction that ends an execution (the
executor's `ending` hook), so the executions it starts commit together with that end:
a daemon that dies right after an upstream execution ended has either fired its flow
triggers or not ended it, never half of it. Each fire is also idempotent by the key
`flow:{upstream id}:{namespace}/{flow}/{trigger}` (executions.trigger_key).

Which deployed flows listen is read from the store (flows whose source names the
Flow trigger type, parsed once per revision) and read again when the deployed commit
changes or `changed()` says a flow was deployed locally.

A chain of flows triggering each other stops at `MAX_CHAIN` executions: the one that
would go deeper is not created, and the execution that would have started it gets an
ERROR log line that names the chain.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError

from headwater.daemon.engine.context import is_true, labels_map, text_of
from headwater.daemon.engine.executor import ExecutionRequest, Executor
from headwater.daemon.engine.flows import parse_flow
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.expressions import has_expression
from headwater.daemon.flow.base import Condition
from headwater.daemon.flow.triggers.conditions import (
    ExecutionFlow,
    ExecutionNamespace,
    ExecutionStatus,
    Expression,
)
from headwater.daemon.flow.triggers.flow import TERMINAL_STATES, FlowTrigger, UpstreamFlow
from headwater.daemon.store.store import Row, Tx

log = logging.getLogger(__name__)

TRIGGER_TYPE = "core.trigger.Flow"
"""`trigger.type` of the executions a flow trigger starts."""
SUBFLOW_TYPE = "core.flow.Subflow"
MAX_CHAIN = 10  # flow-trigger executions in a row (DESIGN: a chain stops at depth 10)
TYPE_FRAGMENTS = ("trigger.Flow", "triggers.types.Flow")
"""Text every spelling of the Flow trigger type contains: flows without it are not parsed."""


@dataclass(frozen=True)
class Listener:
    """An enabled Flow trigger of a deployed flow revision."""

    namespace: str
    flow_id: str
    revision: int
    trigger: FlowTrigger

    @property
    def name(self) -> str:
        return f"{self.namespace}.{self.flow_id}"


@dataclass
class _Index:
    """Listeners by each upstream flow they name literally, and those that name none."""

    by_flow: dict[tuple[str, str], list[Listener]] = field(default_factory=dict)
    rest: list[Listener] = field(default_factory=list)


def _named_upstream(trigger: FlowTrigger) -> frozenset[tuple[str, str]] | None:
    """The upstream flows a trigger can fire for, when its conditions name them
    literally (an ExecutionFlow condition, or preconditions that all name a flow id);
    None when any flow may do."""
    for condition in trigger.conditions or []:
        if isinstance(condition, ExecutionFlow) and not (
            has_expression(condition.namespace) or has_expression(condition.flowId)
        ):
            return frozenset({(condition.namespace, condition.flowId)})
    upstream = trigger.preconditions.flows if trigger.preconditions else []
    literal = [
        (u.namespace, u.flowId)
        for u in upstream
        if u.flowId is not None and not has_expression(u.namespace + u.flowId)
    ]
    if upstream and len(literal) == len(upstream):
        return frozenset(literal)
    return None


class FlowTriggers:
    """Fires the deployed Flow triggers that an ending execution satisfies."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self._lock = threading.Lock()
        self._generation = 0
        self._read_at: tuple[str | None, int] | None = None
        self._listeners = _Index()
        self._parsed: dict[tuple[str, str, int], list[FlowTrigger]] = {}

    def changed(self) -> None:
        """Flows were deployed without a sync (local runs, tests): read them again."""
        with self._lock:
            self._generation += 1

    def refresh(self, *_: object) -> None:
        """Read the deployed listeners now (after a sync), rather than in the next
        transaction that ends an execution, where it would hold the write lock."""
        with self.executor.store.read() as tx:
            self._index(tx)

    # -- firing ------------------------------------------------------------------------
    def on_end(self, tx: Tx, execution: Row) -> list[Row]:
        """Start what `execution`'s end triggers, in its transaction; the executions
        that ended as a result (for the executor to report after the commit)."""
        ended: list[Row] = []
        chain: list[str] | None = None
        for listener in self._current(tx, execution):
            if (listener.namespace, listener.flow_id) == (
                execution["namespace"],
                execution["flow_id"],
            ):
                continue  # a flow never triggers itself (validation refuses a trigger that says so)
            if chain is None:
                chain = [*chain_of(tx, execution), _name(execution)]
            variables = _variables(listener, execution, chain)
            if self._matches(tx, listener, execution, variables):
                ended += self._fire(tx, listener, execution, variables)
        return ended

    def _matches(
        self, tx: Tx, listener: Listener, execution: Row, variables: Mapping[str, Any]
    ) -> bool:
        trigger = listener.trigger
        if execution["state"] not in (trigger.states or TERMINAL_STATES):
            return False
        upstream = trigger.preconditions.flows if trigger.preconditions else []
        if upstream and not any(_upstream_matches(u, execution) for u in upstream):
            return False
        try:
            return all(self._holds(c, execution, variables) for c in trigger.conditions or [])
        except HeadwaterError as exc:
            self._note(tx, execution, "WARN", f"{_what(listener)}: a condition failed: {exc}")
            return False

    def _holds(self, condition: Condition, execution: Row, variables: Mapping[str, Any]) -> bool:
        def text(value: str) -> str:
            return text_of(self.executor.renderer.render(value, variables))

        if isinstance(condition, ExecutionFlow):
            return (text(condition.namespace), text(condition.flowId)) == (
                execution["namespace"],
                execution["flow_id"],
            )
        if isinstance(condition, ExecutionNamespace):
            return _namespace_matches(condition, text(condition.namespace), execution["namespace"])
        if isinstance(condition, ExecutionStatus):
            state = execution["state"]
            return (condition.in_ is None or state in condition.in_) and (
                condition.notIn is None or state not in condition.notIn
            )
        if isinstance(condition, Expression):
            return is_true(self.executor.renderer.render(condition.expression, variables))
        return False  # a condition type flow triggers do not know never holds

    def _fire(
        self, tx: Tx, listener: Listener, upstream: Row, variables: Mapping[str, Any]
    ) -> list[Row]:
        trigger_vars: dict[str, Any] = variables["trigger"]
        chain = [*trigger_vars["chain"], listener.name]
        if len(chain) > MAX_CHAIN + 1:
            self._note(
                tx,
                upstream,
                "ERROR",
                f"{_what(listener)} was not fired: it would make {len(chain) - 1} executions "
                f"started by flow triggers in a row ({' -> '.join(chain)}); a chain stops at "
                f"{MAX_CHAIN} (do these flows trigger each other in a loop?)",
            )
            return []
        trigger = listener.trigger
        try:
            with tx.savepoint():
                request = ExecutionRequest(
                    listener.namespace,
                    listener.flow_id,
                    revision=listener.revision,
                    inputs=self._render_map(trigger.inputs, variables),
                    labels={k: text_of(v) for k, v in self._labels(trigger, variables).items()},
                    trigger=trigger_vars,
                    trigger_key=f"flow:{upstream['id']}:{listener.namespace}/"
                    f"{listener.flow_id}/{trigger.id}",
                )
                row, ended = self.executor.create_in(tx, request)
        except HeadwaterError as exc:
            self._note(tx, upstream, "ERROR", f"{_what(listener)} could not start it: {exc}")
            return []
        except IntegrityError:
            # PostgreSQL: another replica made this trigger key's execution after our
            # check; it fired once, there.
            return []
        except Exception:  # a bug must not undo the upstream's end: it is logged instead
            log.exception("flow trigger failed", extra={"execution": upstream["id"]})
            self._note(tx, upstream, "ERROR", f"{_what(listener)} failed; see the daemon's log")
            return []
        log.info(
            "%s started execution %s",
            _what(listener),
            row["id"],
            extra={"execution": upstream["id"], "flow": listener.name},
        )
        return ended

    def _render_map(
        self, values: Mapping[str, Any] | None, variables: Mapping[str, Any]
    ) -> dict[str, Any]:
        rendered = self.executor.renderer.render(dict(values or {}), variables)
        return dict(rendered)

    def _labels(self, trigger: FlowTrigger, variables: Mapping[str, Any]) -> dict[str, Any]:
        labels = trigger.labels
        if isinstance(labels, list):
            return self._render_map({pair.key: pair.value for pair in labels}, variables)
        return self._render_map(labels, variables)

    def _note(self, tx: Tx, execution: Row, level: str, message: str) -> None:
        """A log line on the upstream execution (people look there), and in the daemon's log."""
        masked = self.executor.renderer.masker.mask(message)
        log.warning(masked, extra={"execution": execution["id"]})
        tx.insert_logs(
            [
                {
                    "execution_id": execution["id"],
                    "task_run_id": None,
                    "attempt": 0,
                    "timestamp": self.executor.clock(),
                    "level": level,
                    "message": masked,
                }
            ]
        )

    # -- which flows listen ----------------------------------------------------------
    def _current(self, tx: Tx, execution: Row) -> list[Listener]:
        """The listeners that may fire for `execution`: those that name its flow
        literally, and those that name no flow (checked in full by `_matches`)."""
        index = self._index(tx)
        return [*index.by_flow.get((execution["namespace"], execution["flow_id"]), []), *index.rest]

    def _index(self, tx: Tx) -> _Index:
        state = tx.existing_sync_state() or {}
        with self._lock:
            wanted = (state.get("deployed_commit"), self._generation)
            if wanted == self._read_at:
                return self._listeners
        rows = {
            (row["namespace"], row["flow_id"]): row
            for fragment in TYPE_FRAGMENTS
            for row in tx.deployed_sources(fragment)
        }
        listeners = [
            Listener(row["namespace"], row["flow_id"], row["revision"], trigger)
            for row in rows.values()
            for trigger in self._triggers_of(row)
            if not trigger.disabled
        ]
        index = _Index()
        for listener in listeners:
            named = _named_upstream(listener.trigger)
            if named is None:
                index.rest.append(listener)
            for key in named or ():
                index.by_flow.setdefault(key, []).append(listener)
        with self._lock:
            self._listeners, self._read_at = index, wanted
            deployed = {(r["namespace"], r["flow_id"], int(r["revision"])) for r in rows.values()}
            self._parsed = {k: v for k, v in self._parsed.items() if k in deployed}
        return index

    def _triggers_of(self, row: Row) -> list[FlowTrigger]:
        key = (row["namespace"], row["flow_id"], int(row["revision"]))
        found = self._parsed.get(key)
        if found is None:
            try:
                flow = parse_flow(row["source"], row.get("path") or f"{key[0]}/{key[1]}.yaml")
            except HeadwaterError as exc:  # deployed flows are valid; an old one may not be
                log.warning("flow %s.%s is not valid: %s", key[0], key[1], exc)
                flow = None
            enabled = flow is not None and text_of(flow.disabled).lower() != "true"
            triggers = flow.triggers if flow is not None and enabled else None
            found = [t for t in triggers or [] if isinstance(t, FlowTrigger)]
            self._parsed[key] = found
        return found


def _variables(listener: Listener, execution: Row, chain: list[str]) -> dict[str, Any]:
    """What conditions, inputs and labels of a flow trigger see: `trigger` (the upstream
    execution, as the started execution will see it), `execution` and `flow`."""
    trigger = {
        "type": TRIGGER_TYPE,
        "id": listener.trigger.id,
        "executionId": execution["id"],
        "namespace": execution["namespace"],
        "flowId": execution["flow_id"],
        "flowRevision": execution["flow_revision"],
        "state": execution["state"],
        "outputs": execution.get("outputs") or {},
        "labels": labels_map(execution.get("labels")),
        "chain": chain,
    }
    return {
        "trigger": trigger,
        "execution": {
            "id": execution["id"],
            "namespace": execution["namespace"],
            "flowId": execution["flow_id"],
            "state": execution["state"],
            "outputs": execution.get("outputs") or {},
            "labels": trigger["labels"],
        },
        "flow": {"namespace": listener.namespace, "id": listener.flow_id},
    }


def chain_of(tx: Tx, execution: Row) -> list[str]:
    """The flows (namespace.id) whose flow triggers led to `execution`, first one first.

    A subflow's execution belongs to its parent's chain, so a loop that goes through a
    subflow is bounded too.
    """
    seen = 0
    while execution is not None and seen <= MAX_CHAIN:
        trigger = execution.get("trigger") or {}
        if trigger.get("type") == TRIGGER_TYPE:
            return [str(name) for name in trigger.get("chain") or []]
        parent_id = execution.get("parent_execution_id")
        if trigger.get("type") != SUBFLOW_TYPE or parent_id is None:
            return []
        parent = tx.execution(parent_id)
        if parent is None:
            return []
        execution = parent
        seen += 1
    return []


def _upstream_matches(upstream: UpstreamFlow, execution: Row) -> bool:
    return (
        upstream.namespace == execution["namespace"]
        and upstream.flowId in (None, execution["flow_id"])
        and (upstream.states is None or execution["state"] in upstream.states)
    )


def _namespace_matches(condition: ExecutionNamespace, wanted: str, namespace: str) -> bool:
    comparison = "PREFIX" if condition.prefix else condition.comparison
    if comparison == "PREFIX":
        return namespace.startswith(wanted)
    if comparison == "SUFFIX":
        return namespace.endswith(wanted)
    return namespace == wanted


def _name(execution: Row) -> str:
    return f"{execution['namespace']}.{execution['flow_id']}"


def _what(listener: Listener) -> str:
    return f"flow trigger {listener.trigger.id} of {listener.name}"
