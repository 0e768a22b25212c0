"""Executions (`/executions`) and an execution (`/executions/<id>`): the filtered list,
and one execution's state, inputs, outputs, task runs on a timeline, logs, and the
buttons that kill, restart, replay or resume it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from flask import Response, redirect, request, url_for
from flask.typing import ResponseReturnValue

from headwater.daemon.engine.logs import LEVELS
from headwater.daemon.engine.sealing import is_sealed
from headwater.daemon.engine.states import State
from headwater.daemon.errors import ExecutionNotFound, ExecutionStateConflict, HeadwaterError
from headwater.daemon.storage import URI_PREFIX, StorageError, key_of
from headwater.daemon.store import queries
from headwater.daemon.store.store import Row
from headwater.web.auth import write_call
from headwater.web.pages import display, flowsource, topology
from headwater.web.pages.blueprint import blueprint, missing, page
from headwater.web.pages.paging import moment, number, page_of
from headwater.web.seam import now, services

audit = logging.getLogger("headwater.audit")

EXECUTIONS_PAGE_SIZE = 50
COUNT_LIMIT = 10_000  # the list counts matches up to this, then says "10,000+"
LOG_LINES = 1_000  # the last lines shown; older ones page back
MIN_WIDTH = 0.4  # percent: the shortest bar on the timeline, so an instant still shows
DONE = {
    "kill": "A kill was asked for: running tasks are being stopped.",
    "restart": "Restarted: the failed task runs run again.",
    "resume": "Resumed.",
    "replay": "This is a replay: a new execution of the same revision.",
}


@dataclass(frozen=True)
class Segment:
    """A stretch of the timeline, in percent of the execution's span."""

    left: float
    width: float
    state: str


@dataclass(frozen=True)
class LogLine:
    """A log line as the page shows it, formatted here: a thousand lines go through
    Jinja's filters much slower than through this loop."""

    id: int
    clock: str
    """Time of day (UTC), 16:20:03; `title` holds the full time."""
    title: str
    level: str
    task: str
    message: str


@dataclass
class RunView:
    """A task run placed in the tree (depth) and on the timeline: one segment per
    attempt that ended, and one for the attempt under way."""

    row: Row
    depth: int
    segments: list[Segment]


# -- the list ------------------------------------------------------------------------------
@blueprint.get("/executions")
def executions() -> ResponseReturnValue:
    states = [s for s in request.args.getlist("state") if s in display.ALL_STATES]
    since_text, until_text = request.args.get("from", ""), request.args.get("to", "")
    wanted = queries.ExecutionFilter(
        namespace=request.args.get("namespace", "").strip() or None,
        flow_id=request.args.get("flow", "").strip() or None,
        states=states,
        since=moment(since_text),
        until=moment(until_text),
    )
    number_ = page_of(request)
    with services().store.read() as tx:
        found = queries.list_executions(
            tx, wanted, queries.Page(number_, EXECUTIONS_PAGE_SIZE), COUNT_LIMIT
        )
    return page(
        "executions.html",
        rows=found.results,
        total=found.total,
        capped=found.total >= COUNT_LIMIT,
        wanted=wanted,
        since_text=since_text,
        until_text=until_text,
        bad_times=[t for t in (since_text, until_text) if t.strip() and moment(t) is None],
        number=number_,
        pages=max(1, -(-found.total // EXECUTIONS_PAGE_SIZE)),
        more=len(found.results) == EXECUTIONS_PAGE_SIZE,
        query=_query_without_page(),
    )


def _query_without_page() -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.args.items(multi=True) if k != "page"]


# -- one execution -------------------------------------------------------------------------
@blueprint.get("/executions/<execution_id>")
def execution(execution_id: str) -> ResponseReturnValue:
    return _execution_page(execution_id)


def _execution_page(
    execution_id: str, problem: str | None = None, status: int = 200
) -> ResponseReturnValue:
    level = request.args.get("level", "").upper()
    levels = LEVELS[LEVELS.index(level) :] if level in LEVELS[1:] else None
    before = number(request, "before")
    with services().store.read() as tx:
        row = tx.execution(execution_id)
        if row is None:
            return missing(f"There is no execution {execution_id}.")
        runs = tx.task_runs(execution_id)
        revision = tx.revision(row["namespace"], row["flow_id"], row["flow_revision"])
        logs = queries.log_tail(tx, execution_id, levels, before, LOG_LINES + 1)
    older = len(logs) > LOG_LINES
    logs = logs[-LOG_LINES:]
    view = flowsource.read(revision["source"] if revision else "")
    given = row.get("inputs") or {}
    # Webhook keys, and the values of SECRET inputs wherever else they appear.
    opened = services().open_inputs(given)
    secret = [k for k, v in given.items() if k in view.secret_inputs or is_sealed(v)]
    hidden = [*view.hidden, *(str(opened[k]) for k in secret if opened.get(k))]
    inputs = {
        k: display.HIDDEN
        if k in view.secret_inputs or is_sealed(v)
        else display.redact_value(v, hidden)
        for k, v in given.items()
    }
    states = {run["task_id"]: run["state"] for run in runs}
    task_ids = {run["id"]: run["task_id"] for run in runs}
    return page(
        "execution.html",
        status,
        execution=row,
        revision=revision,
        inputs=inputs,
        outputs=display.redact_value(row.get("outputs") or {}, hidden),
        task_outputs=display.redact_value(_task_outputs(runs), hidden),
        trigger=display.redact_value(row.get("trigger"), hidden),
        labels=flowsource.labels_of(row.get("labels")),
        runs=_tree(runs, row, now()),
        metrics=[(run, m) for run in runs for m in run.get("metrics") or []],
        svg=topology.render(view.data, states),
        logs=[_log_line(line, task_ids, hidden) for line in logs],
        older=logs[0]["id"] if older and logs else None,
        level=level if levels else "",
        levels=LEVELS,
        paging_back=before is not None,
        live=row["state"] not in display.FINISHED,
        actions=_actions(row["state"]),
        problem=problem,
        done=DONE.get(request.args.get("done", "")),
        file_href=file_href,
    )


def _log_line(row: Row, task_ids: dict[str, str], hidden: list[str]) -> LogLine:
    full = display.clock(row["timestamp"])
    task = task_ids.get(row.get("task_run_id") or "", "")
    message = display.redact(row["message"], hidden) if hidden else row["message"]
    return LogLine(row["id"], full[11:19], full, row["level"], task, message)


def _tree(runs: list[Row], execution: Row, moment_: float) -> list[RunView]:
    """Task runs in tree order (children under their parent, by creation), with their
    place on the timeline of the whole execution."""
    start = min((r["start_date"] for r in runs if r.get("start_date")), default=None)
    start = start or execution.get("start_date") or execution["created_at"]
    end = execution.get("end_date") or moment_
    for run in runs:
        end = max(end, run.get("end_date") or 0)
    total = max(end - start, 1e-6)
    children: dict[str | None, list[Row]] = {}
    for run in sorted(runs, key=lambda r: r.get("seq") or 0):
        children.setdefault(run.get("parent_id"), []).append(run)
    known = {run["id"] for run in runs}
    placed: list[RunView] = []

    def segment(began: float, ended: float | None, state: str) -> Segment:
        width = ((ended or moment_) - began) / total * 100
        return Segment(max(0.0, (began - start) / total * 100), max(MIN_WIDTH, width), state)

    def segments(run: Row) -> list[Segment]:
        done = [a for a in run.get("attempts") or [] if a.get("startDate")]
        found = [segment(a["startDate"], a.get("endDate"), str(a.get("state"))) for a in done]
        ended = done[-1].get("endDate") if done else None
        if run.get("start_date") and not run.get("end_date") and (not done or ended):
            found.append(segment(ended or run["start_date"], None, run["state"]))
        if not found and run.get("start_date"):
            found.append(segment(run["start_date"], run.get("end_date"), run["state"]))
        return found

    def visit(parent: str | None, depth: int) -> None:
        for run in children.get(parent, []):
            placed.append(RunView(run, depth, segments(run)))
            visit(run["id"], depth + 1)

    visit(None, 0)
    orphans = [r for r in runs if r.get("parent_id") and r["parent_id"] not in known]
    for run in orphans:  # a parent that is gone: show the run rather than lose it
        placed.append(RunView(run, 0, segments(run)))
    return placed


def _task_outputs(runs: list[Row]) -> dict[str, Any]:
    """Outputs of the task runs that have some, by task id (`id[value]` in a loop)."""
    found: dict[str, Any] = {}
    for run in runs:
        if run.get("outputs"):
            name = run["task_id"] + (f"[{run['value']}]" if run.get("value") is not None else "")
            found[name] = run["outputs"]
    return found


def _actions(state: str) -> list[str]:
    """Which buttons apply to an execution in `state` (the daemon has the last word)."""
    found = []
    if state not in display.FINISHED and state != State.KILLING:
        found.append("kill")
    if state == State.PAUSED:
        found.append("resume")
    if state in (State.FAILED, State.KILLED):
        found.append("restart")
    if state in display.FINISHED:
        found.append("replay")
    return found


# -- files ---------------------------------------------------------------------------------
@blueprint.get("/executions/<execution_id>/file")
def download(execution_id: str) -> ResponseReturnValue:
    """An output file or FILE input of this execution, from internal storage."""
    uri = request.args.get("path", "")
    try:
        key = key_of(uri)
    except StorageError:
        return missing("That is not a file of internal storage.")
    if f"/executions/{execution_id}/" not in f"/{key}":
        return missing(f"Execution {execution_id} has no file {uri}.")
    try:
        data = services().storage.get(key)
    except StorageError:
        return missing(f"The file {uri} is no longer in internal storage.")
    # Always an attachment of no particular type: an uploaded .html must not render here.
    name = quote(PurePosixPath(key).name, safe="")
    response = Response(data, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{name}"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def file_href(uri: Any) -> str | None:
    """Where the page offers a file of internal storage: the download route of the
    execution that keeps it (its key holds `executions/<id>/`); None for anything else."""
    if not isinstance(uri, str) or not uri.startswith(URI_PREFIX):
        return None
    try:
        parts = key_of(uri).split("/")
    except StorageError:
        return None
    for index, part in enumerate(parts[:-1]):
        if part == "executions" and index + 2 < len(parts):
            return url_for("pages.download", execution_id=parts[index + 1], path=uri)
    return None


# -- actions -------------------------------------------------------------------------------
@blueprint.post("/executions/<execution_id>/kill")
@write_call
def kill(execution_id: str) -> ResponseReturnValue:
    return _act(execution_id, "kill", lambda: services().kill_execution(execution_id))


@blueprint.post("/executions/<execution_id>/restart")
@write_call
def restart(execution_id: str) -> ResponseReturnValue:
    return _act(execution_id, "restart", lambda: services().restart_execution(execution_id))


@blueprint.post("/executions/<execution_id>/resume")
@write_call
def resume(execution_id: str) -> ResponseReturnValue:
    return _act(execution_id, "resume", lambda: services().resume_execution(execution_id))


@blueprint.post("/executions/<execution_id>/replay")
@write_call
def replay(execution_id: str) -> ResponseReturnValue:
    task_run_id = request.form.get("taskRunId") or None
    return _act(
        execution_id,
        "replay",
        lambda: services().replay_execution(execution_id, task_run_id=task_run_id),
    )


def _act(execution_id: str, verb: str, call: Callable[[], Row]) -> ResponseReturnValue:
    """Do `call`; show the execution it leaves (a replay's new one), or why it was refused."""
    try:
        row = call()
    except ExecutionNotFound:
        return missing(f"There is no execution {execution_id}.")
    except ExecutionStateConflict as exc:
        return _execution_page(execution_id, f"Cannot {verb}: {exc}", 409)
    except HeadwaterError as exc:
        return _execution_page(execution_id, f"Cannot {verb}: {exc}", 400)
    target = row["id"] if row and row.get("id") else execution_id
    audit.info("execution %s: %s from the page by %s", execution_id, verb, request.remote_addr)
    return redirect(url_for("pages.execution", execution_id=target, done=verb), 303)
