"""Overview (`/`) and Syncs (`/syncs`): what is deployed, did the last push deploy and
if not why, what ran in the last day, and what is running now."""

from __future__ import annotations

from flask import request
from flask.typing import ResponseReturnValue

from headwater.daemon.store import queries
from headwater.web import serialize
from headwater.web.pages import display
from headwater.web.pages.blueprint import blueprint, page
from headwater.web.pages.paging import page_of
from headwater.web.seam import now, services

DAY = 86_400.0
SYNCS_SHOWN = 5  # sync attempts on the overview
RUNNING_SHOWN = 50  # unfinished executions on the overview
SYNCS_PAGE_SIZE = 50


@blueprint.get("/")
def overview() -> ResponseReturnValue:
    moment = now()
    with services().store.read() as tx:
        state = queries.sync_state(tx)
        attempts = queries.sync_history(tx, queries.Page(1, SYNCS_SHOWN)).results
        counts = queries.state_counts_since(tx, moment - DAY)
        running = queries.running_executions(tx, display.ACTIVE_STATES, RUNNING_SHOWN)
    deployed = state.get("deployed_commit")
    head = state.get("branch_head")
    return page(
        "overview.html",
        state=state,
        sync_status=serialize.status_word(state),
        deployed=_commit(deployed),
        head=_commit(head) if head and head != deployed else None,
        attempts=attempts,
        last=attempts[0] if attempts else None,
        counts=[(s, counts[s]) for s in display.ALL_STATES if counts.get(s)],
        counted=sum(counts.values()),
        running=running,
        warnings=state.get("warnings") or [],
        since_text=display.field_time(moment - DAY),
    )


def _commit(sha: str | None) -> dict[str, object] | None:
    """The commit's sha, author, date and message, as far as git can tell."""
    if not sha:
        return None
    found = services().commit_info(sha)
    if found is None:
        return {"sha": sha, "author": None, "date": None, "message": None}
    return {"sha": sha, "author": found.author, "date": found.date, "message": found.message}


@blueprint.get("/syncs")
def syncs() -> ResponseReturnValue:
    number = page_of(request)
    with services().store.read() as tx:
        found = queries.sync_history(tx, queries.Page(number, SYNCS_PAGE_SIZE))
    return page(
        "syncs.html",
        attempts=found.results,
        total=found.total,
        number=number,
        pages=max(1, -(-found.total // SYNCS_PAGE_SIZE)),
    )
