"""Flows (`/flows`) and a flow (`/flows/<namespace>/<id>`): the namespace tree, a
flow's source, topology, revisions and their diffs, its executions, the start form."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from flask import redirect, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from headwater.daemon import secretrefs
from headwater.daemon.engine.flows import FlowNotFound
from headwater.daemon.engine.inputs import InputsRefused
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.store import queries
from headwater.daemon.store.store import Row
from headwater.web.auth import write_call
from headwater.web.pages import diff, display, flowsource, forms, topology
from headwater.web.pages.blueprint import blueprint, missing, page
from headwater.web.pages.paging import number, page_of
from headwater.web.seam import services

audit = logging.getLogger("headwater.audit")

FLOWS_PAGE_SIZE = 100
LAST_STATES = 10  # squares of recent execution states beside each flow
RECENT_EXECUTIONS = 20  # on a flow's page


@dataclass
class NamespaceNode:
    """A namespace in the tree: its flows and its child namespaces."""

    name: str
    """The full name (company.team)."""
    flows: list[Row] = field(default_factory=list)
    children: dict[str, NamespaceNode] = field(default_factory=dict)

    @property
    def leaf_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]


def namespace_tree(rows: list[Row]) -> list[NamespaceNode]:
    """Flows (sorted by namespace) as a tree of namespaces, top-level ones first."""
    roots: dict[str, NamespaceNode] = {}
    for row in rows:
        parts = row["namespace"].split(".")
        level, node = roots, None
        for depth in range(len(parts)):
            name = ".".join(parts[: depth + 1])
            node = level.setdefault(parts[depth], NamespaceNode(name))
            level = node.children
        assert node is not None
        node.flows.append(row)
    return list(roots.values())


@blueprint.get("/flows")
def flows() -> ResponseReturnValue:
    namespace = request.args.get("namespace", "").strip()
    q = request.args.get("q", "").strip()
    number_ = page_of(request)
    with services().store.read() as tx:
        found = queries.search_flows(
            tx, queries.Page(number_, FLOWS_PAGE_SIZE), namespace or None, q or None
        )
        keys = [(r["namespace"], r["flow_id"]) for r in found.results]
        triggers = queries.trigger_states(tx, keys)
        states = queries.latest_states(tx, keys, LAST_STATES)
        namespaces = queries.namespaces(tx)
    for row in found.results:
        key = (row["namespace"], row["flow_id"])
        row["view"] = flowsource.read(row["source"], row.get("path") or "flow.yaml")
        row["next_fires"] = {t["trigger_id"]: t for t in triggers.get(key, [])}
        row["last"] = list(reversed(states.get(key, [])))
    return page(
        "flows.html",
        tree=namespace_tree(found.results),
        total=found.total,
        namespace=namespace,
        namespaces=namespaces,
        q=q,
        number=number_,
        pages=max(1, -(-found.total // FLOWS_PAGE_SIZE)),
    )


@blueprint.get("/flows/<namespace>/<flow_id>")
def flow(namespace: str, flow_id: str) -> ResponseReturnValue:
    return _flow_page(namespace, flow_id)


def _flow_page(
    namespace: str,
    flow_id: str,
    given: MultiDict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    problem: str | None = None,
) -> ResponseReturnValue:
    wanted = number(request, "revision")
    with services().store.read() as tx:
        row = queries.flow(tx, namespace, flow_id)
        if row is None:
            return missing(f"There is no flow {namespace}.{flow_id}.")
        revisions = queries.flow_revisions(tx, namespace, flow_id)
        shown = tx.revision(namespace, flow_id, wanted) if wanted else None
        executions = queries.flow_executions(tx, namespace, flow_id, RECENT_EXECUTIONS)
        triggers = queries.trigger_states(tx, [(namespace, flow_id)])[(namespace, flow_id)]
        warnings = secretrefs.of_flow(queries.sync_state(tx).get("warnings"), namespace, flow_id)
    if wanted and shown is None:
        return missing(f"Flow {namespace}.{flow_id} has no revision {wanted}.")
    deployed = flowsource.read(row["source"], row.get("path") or "flow.yaml")
    source_row = shown or row
    view = flowsource.read(source_row["source"], row.get("path") or "flow.yaml")
    hidden = set(view.hidden) | set(deployed.hidden)
    status = 422 if problem else 200
    return page(
        "flow.html",
        status,
        flow=row,
        view=deployed,
        shown=source_row,
        shown_view=view,
        source=display.redact(source_row["source"], hidden),
        svg=topology.render(view.data),
        revisions=revisions,
        executions=executions,
        next_fires={t["trigger_id"]: t for t in triggers},
        fields=forms.fields(deployed.inputs, given, errors),
        problem=problem,
        warnings=warnings,
    )


@blueprint.get("/flows/<namespace>/<flow_id>/diff")
def flow_diff(namespace: str, flow_id: str) -> ResponseReturnValue:
    """The change between two revisions (`from`, `to`): a deleted one has no source."""
    with services().store.read() as tx:
        revisions = queries.flow_revisions(tx, namespace, flow_id)
        if not revisions:
            return missing(f"There is no flow {namespace}.{flow_id}.")
        newest = revisions[0]["revision"]
        to = number(request, "to") or newest
        since = number(request, "from") or max(1, to - 1)
        old, new = tx.revision(namespace, flow_id, since), tx.revision(namespace, flow_id, to)
    if old is None or new is None:
        absent = since if old is None else to
        return missing(f"Flow {namespace}.{flow_id} has no revision {absent}.")
    hidden = {*_hidden(old), *_hidden(new)}
    lines = diff.line_diff(_text(old, hidden), _text(new, hidden))
    added, removed = diff.counts(lines)
    return page(
        "flow_diff.html",
        namespace=namespace,
        flow_id=flow_id,
        old=old,
        new=new,
        lines=lines,
        added=added,
        removed=removed,
        revisions=revisions,
    )


def _hidden(revision: Row) -> tuple[str, ...]:
    return flowsource.read(revision["source"]).hidden


def _text(revision: Row, hidden: set[str]) -> str:
    return "" if revision["deleted"] else display.redact(revision["source"], hidden)


@blueprint.post("/flows/<namespace>/<flow_id>/execute")
@write_call
def start(namespace: str, flow_id: str) -> ResponseReturnValue:
    """Start an execution from the form; a refused input shows next to its field."""
    with services().store.read() as tx:
        row = queries.flow(tx, namespace, flow_id)
    if row is None or row["deleted"]:
        return missing(f"There is no deployed flow {namespace}.{flow_id}.")
    declared = flowsource.read(row["source"]).inputs
    lists = {str(i.get("id")) for i in declared if str(i.get("type")).upper() == "MULTISELECT"}
    inputs = forms.posted_inputs(request.form, request.files, lists)
    try:
        created = services().start_execution(namespace, flow_id, inputs)
    except InputsRefused as exc:
        errors: dict[str, str] = {}
        for item in exc.problems:
            errors.setdefault(item.input_id, item.reason)
        unplaced = [
            f"{p.input_id}: {p.reason}" for p in exc.problems if not _declared(p.input_id, declared)
        ]
        message = "The inputs were refused; nothing was started."
        if unplaced:
            message += " " + "; ".join(unplaced)
        return _flow_page(namespace, flow_id, request.form, errors, message)
    except FlowNotFound as exc:
        return missing(str(exc))
    except HeadwaterError as exc:
        return _flow_page(namespace, flow_id, request.form, {}, str(exc))
    audit.info(
        "execution %s of %s.%s started from the page by %s",
        created["id"],
        namespace,
        flow_id,
        request.remote_addr,
    )
    return redirect(url_for("pages.execution", execution_id=created["id"]), 303)


def _declared(input_id: str, declared: list[dict[str, Any]]) -> bool:
    return any(i.get("id") == input_id for i in declared)
