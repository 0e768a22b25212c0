"""Store rows to the JSON the API answers (Kestra's field names, times in RFC 3339 UTC).

Nothing here reads the store or the request: each function takes rows and returns
plain dicts, so shapes are easy to test and the page can reuse them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from headwater.daemon import yamlsource
from headwater.daemon.engine.context import iso
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.services import WebSettings
from headwater.daemon.store.queries import Found
from headwater.daemon.store.store import Row
from headwater.daemon.sync import SyncOutcome

Json = dict[str, Any]
DIAGNOSTIC_KEYS = ("path", "line", "column", "severity", "field", "message")


def found(page: Found, shape: Callable[[Row], Json]) -> Json:
    return {"results": [shape(row) for row in page.results], "total": page.total}


def duration(seconds: float | None) -> str | None:
    """An ISO-8601 duration as Java's `Duration.toString` writes it: PT1H2M3.5S, PT0S."""
    if seconds is None:
        return None
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    text = "PT"
    if hours:
        text += f"{hours}H"
    if minutes:
        text += f"{minutes}M"
    if millis or text == "PT":
        whole, fraction = divmod(millis, 1000)
        text += f"{whole}.{fraction:03d}".rstrip("0").rstrip(".") + "S"
    return text


def _span(start: float | None, end: float | None, now: float) -> str | None:
    """How long from `start` to `end`, or to now while it lasts."""
    if start is None:
        return None
    return duration((end if end is not None else now) - start)


def public_repository(url: str) -> str:
    """The repository URL without any user name or password written into it."""
    parts = urlsplit(url)
    if not parts.netloc or "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=host))


# -- sync ----------------------------------------------------------------------------------
def status_word(state: Row) -> str:
    """Pinned, Suspended, Synced or OutOfSync (DESIGN: "Sync status words")."""
    if state.get("pinned_commit"):
        return "Pinned"
    if state.get("suspended"):
        return "Suspended"
    deployed = state.get("deployed_commit")
    if deployed is not None and deployed == state.get("branch_head"):
        return "Synced"
    return "OutOfSync"


def diagnostics(errors: Iterable[Mapping[str, Any]] | None) -> list[Json]:
    return [{k: e[k] for k in DIAGNOSTIC_KEYS if k in e} for e in errors or []]


def secret_warnings(warnings: Iterable[Mapping[str, Any]] | None) -> list[Json]:
    """Secrets deployed flows name that are not set (daemon/secretrefs.py)."""
    keys = (*DIAGNOSTIC_KEYS, "namespace", "flowId", "secret")
    return [{k: w[k] for k in keys if k in w} for w in warnings or []]


def sync_attempt(row: Row) -> Json:
    finished = row.get("finished_at")
    return {
        "id": row["id"],
        "cause": row["cause"],
        "fromCommit": row.get("from_commit"),
        "toCommit": row.get("to_commit"),
        "result": row["result"],
        "forced": bool(row.get("forced")),
        "added": row.get("added") or 0,
        "updated": row.get("updated") or 0,
        "deleted": row.get("deleted") or 0,
        "startDate": iso(row["started_at"]),
        "endDate": iso(finished),
        "duration": duration(finished - row["started_at"]) if finished is not None else None,
        "errors": diagnostics(row.get("errors")),
        "message": row.get("message"),
        "warnings": secret_warnings(row.get("warnings")),
    }


def sync_status(state: Row, settings: WebSettings, history: Sequence[Row]) -> Json:
    """What is deployed and how sync is steered, the last attempt beside it, recent attempts."""
    attempts = [sync_attempt(row) for row in history]
    return {
        "repository": public_repository(settings.repository),
        "branch": settings.branch,
        "status": status_word(state),
        "suspended": bool(state.get("suspended")),
        "deployedCommit": state.get("deployed_commit"),
        "deployedDate": iso(state.get("deployed_at")),
        "branchHead": state.get("branch_head"),
        "pinnedCommit": state.get("pinned_commit"),
        "failedCommit": state.get("failed_commit"),
        "lastAttempt": attempts[0] if attempts else None,
        "fetchError": state.get("fetch_error"),
        "fetchFailures": state.get("fetch_failures") or 0,
        "warnings": secret_warnings(state.get("warnings")),
        "history": attempts,
    }


def sync_outcome(outcome: SyncOutcome) -> Json:
    return {
        "result": outcome.result,
        "syncId": outcome.sync_id,
        "fromCommit": outcome.from_commit,
        "toCommit": outcome.to_commit,
        "added": outcome.added,
        "updated": outcome.updated,
        "deleted": outcome.deleted,
        "errors": diagnostics(d.to_json() for d in outcome.errors),
        "message": outcome.message,
        "warnings": secret_warnings(outcome.warnings),
    }


# -- flows ---------------------------------------------------------------------------------
def commit(row: Row) -> Json | None:
    if row.get("commit_sha") is None:
        return None
    return {
        "sha": row["commit_sha"],
        "author": row.get("commit_author"),
        "date": iso(row.get("commit_date")),
        "message": row.get("commit_message"),
    }


def source_summary(source: str, path: str) -> Json:
    """Description, labels, disabled and triggers ({id, type}) read from a flow's source."""
    try:
        data = yamlsource.load(source, path).data
    except HeadwaterError:  # deployed sources are valid; a summary never fails the answer
        data = None
    if not isinstance(data, dict):
        data = {}
    triggers = data.get("triggers")
    if not isinstance(triggers, list):
        triggers = []
    return {
        "description": data.get("description"),
        "labels": data.get("labels") if isinstance(data.get("labels"), dict | list) else None,
        "disabled": data.get("disabled") is True,
        "triggers": [
            {"id": t.get("id"), "type": t.get("type")} for t in triggers if isinstance(t, dict)
        ],
    }


def flow_summary(row: Row) -> Json:
    return {
        "namespace": row["namespace"],
        "id": row["flow_id"],
        "revision": row["revision"],
        "commit": commit(row),
        "path": row.get("path"),
        "updated": iso(row.get("updated_at")),
        **source_summary(row.get("source") or "", row.get("path") or "flow.yaml"),
    }


def flow_detail(row: Row, revision: Row | None = None) -> Json:
    """The deployed flow (or, with `revision`, that revision of it) with its source."""
    shown = revision or row
    return {
        **flow_summary({**row, **shown}),
        "deleted": False,
        "equalsRevision": shown.get("equals_revision"),
        "created": iso(shown.get("created_at")),
        "deployedRevision": None if row.get("deleted") else row["revision"],
        "source": shown.get("source"),
    }


def deleted_message(row: Row) -> Json:
    name = f"{row['namespace']}.{row['flow_id']}"
    sha = row.get("commit_sha")
    where = f"revision {row['revision']}" + (f" (commit {sha[:7]})" if sha else "")
    return {
        "message": f"flow {name} was deleted in {where}",
        "deletedInRevision": row["revision"],
        "deletedInCommit": sha,
    }


def revision(row: Row) -> Json:
    return {
        "revision": row["revision"],
        "commit": commit(row),
        "deleted": bool(row.get("deleted")),
        "equalsRevision": row.get("equals_revision"),
        "created": iso(row.get("created_at")),
    }


# -- executions ----------------------------------------------------------------------------
def execution(row: Row, runs: Sequence[Row], now: float) -> Json:
    """Kestra's execution shape, plus the commit it runs (DESIGN "Interfaces")."""
    histories = row.get("histories") or []
    start = row.get("start_date")  # when it began to run (null while CREATED or QUEUED)
    return {
        "id": row["id"],
        "namespace": row["namespace"],
        "flowId": row["flow_id"],
        "flowRevision": row["flow_revision"],
        "commit": row.get("commit_sha"),
        "state": {
            "current": row["state"],
            "histories": [{"state": h["state"], "date": iso(h["date"])} for h in histories],
            "startDate": iso(start),
            "endDate": iso(row.get("end_date")),
            "duration": _span(start, row.get("end_date"), now),
        },
        "inputs": row.get("inputs") or {},
        "outputs": row.get("outputs") or {},
        "labels": list(row.get("labels") or []),
        "trigger": row.get("trigger"),
        "originalId": row.get("original_id") or row["id"],
        "parentId": row.get("parent_execution_id"),
        "error": row.get("error"),
        "taskRunList": [task_run(run, now) for run in runs],
    }


def task_run(row: Row, now: float) -> Json:
    start = row.get("start_date")
    return {
        "id": row["id"],
        "executionId": row["execution_id"],
        "parentTaskRunId": row.get("parent_id"),
        "taskId": row["task_id"],
        "value": row.get("value"),
        "state": {
            "current": row["state"],
            "startDate": iso(start),
            "endDate": iso(row.get("end_date")),
            "duration": _span(start, row.get("end_date"), now),
        },
        "attempts": [attempt(a) for a in row.get("attempts") or []],
        "outputs": row.get("outputs") or {},
        "error": row.get("error"),
    }


def attempt(item: Mapping[str, Any]) -> Json:
    return {
        "state": item.get("state"),
        "startDate": iso(item.get("startDate")),
        "endDate": iso(item.get("endDate")),
    }


def log_line(row: Row) -> Json:
    return {
        "id": row["id"],
        "timestamp": iso(row["timestamp"]),
        "level": row["level"],
        "taskRunId": row.get("task_run_id"),
        "attempt": row.get("attempt"),
        "message": row["message"],
    }
