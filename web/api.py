"""The JSON API under /api/v1: sync, git webhooks, flows, executions, logs.

Paths follow Kestra's where Kestra has one. Views stay thin: they read the request
(params.py), ask the store (daemon/store/queries.py) or the daemon (services), and
shape the answer (serialize.py). Calls that change something are `@write_call`s.
"""

from __future__ import annotations

import logging
from typing import NoReturn

from flask import Blueprint, current_app, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import RequestEntityTooLarge

from headwater.daemon.engine.flows import FlowNotFound
from headwater.daemon.engine.inputs import InputsRefused
from headwater.daemon.engine.logs import LEVELS
from headwater.daemon.engine.sealing import is_sealed
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.store import queries
from headwater.daemon.store.store import Row, Tx
from headwater.web import gitwebhook, params, serialize
from headwater.web.auth import write_call
from headwater.web.errors import ApiError
from headwater.web.pages import flowsource
from headwater.web.pages.display import HIDDEN
from headwater.web.seam import now, services

audit = logging.getLogger("headwater.audit")

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")

HISTORY_SHOWN = 20  # sync attempts in GET /api/v1/sync; GET /api/v1/syncs pages through all
DEFAULT_LOG_LINES = 1000
MAX_LOG_LINES = 10_000
MAX_SECRET_NAMES = 500  # names asked about in one GET /api/v1/secrets
SHOWN_HEADER_CHARS = 100  # a header value quoted in the audit log is cut to this
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


# -- sync ----------------------------------------------------------------------------------
@blueprint.get("/sync")
def sync_status() -> ResponseReturnValue:
    with services().store.read() as tx:
        state = queries.sync_state(tx)
        history = queries.sync_history(tx, queries.Page(1, HISTORY_SHOWN)).results
    return serialize.sync_status(state, services().web, history)


@blueprint.get("/syncs")
def sync_history() -> ResponseReturnValue:
    page = params.page(request)
    with services().store.read() as tx:
        found = queries.sync_history(tx, page)
    return serialize.found(found, serialize.sync_attempt)


@blueprint.post("/sync")
@write_call
def sync_now() -> ResponseReturnValue:
    to = params.commit(params.json_body(request))
    audit.info("sync%s asked by %s", f" to {to}" if to else "", request.remote_addr)
    try:
        outcome = services().sync_now(to)
    except TimeoutError:
        raise ApiError(504, "the sync did not finish in time; it carries on") from None
    return serialize.sync_outcome(outcome)


@blueprint.post("/sync/suspend")
@write_call
def suspend() -> ResponseReturnValue:
    audit.info("automatic sync suspended by %s", request.remote_addr)
    services().suspend()
    return sync_status()


@blueprint.post("/sync/resume")
@write_call
def resume() -> ResponseReturnValue:
    audit.info("automatic sync resumed by %s", request.remote_addr)
    services().resume()
    return sync_status()


# -- git webhooks --------------------------------------------------------------------------
@blueprint.post("/git/webhook")
def git_webhook() -> ResponseReturnValue:
    """A push notification: a hint to sync now (the sync reads the branch head itself)."""
    settings = services().web
    headers = dict(request.headers.items())
    delivery = gitwebhook.identify(headers)
    if not settings.webhook_secret:
        _refuse(delivery, "no webhook secret is configured")
        raise ApiError(
            401,
            "git webhooks are refused: no webhook secret is configured; set "
            "HEADWATER_WEBHOOK_SECRET on the daemon and the same secret on the git host",
        )
    if delivery is None:
        _refuse(None, "no signature header")
        raise ApiError(401, f"a git webhook must be signed: send {gitwebhook.SIGNATURE_HEADERS}")
    body = _capped_body(settings.max_webhook_bytes)
    problem = gitwebhook.check(delivery.provider, headers, settings.webhook_secret, body)
    if problem is not None:
        _refuse(delivery, problem)
        raise ApiError(401, f"the webhook is refused: {problem}")
    if delivery.event == gitwebhook.PING:
        return {"accepted": False, "event": "ping", "message": "pong: the signature is good"}
    if delivery.event != gitwebhook.PUSH:
        return _ignored(f"{delivery.event!r} events are not acted on, only pushes")
    try:
        ref = gitwebhook.push_ref(body, request.content_type)
    except gitwebhook.PayloadError as exc:
        raise ApiError(400, str(exc)) from None
    tracked = gitwebhook.branch_ref(settings.branch)
    if ref is not None and ref != tracked:
        return _ignored(f"a push to {ref[:200]}; only {tracked} is deployed")
    seen = _seen_before(delivery, body)
    if seen is not None:
        return _ignored(seen)
    services().request_sync("webhook")
    audit.info(
        "git webhook accepted: provider=%s remote=%s delivery=%s",
        delivery.provider,
        request.remote_addr,
        _shown(delivery.delivery_id),
    )
    return {"accepted": True, "message": "a sync is requested"}, 202


def _capped_body(limit: int) -> bytes:
    """The raw body, reading no more than `limit` bytes (413 beyond)."""
    request.max_content_length = limit
    try:
        return request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise ApiError(413, f"the body is larger than {limit} bytes") from None


def _seen_before(delivery: gitwebhook.Delivery, body: bytes) -> str | None:
    """Why this push was acted on already (its delivery id, or its signed body, arrived
    before), or None once both are recorded."""
    delivery_id = delivery.delivery_id
    if delivery_id is not None and len(delivery_id) > gitwebhook.MAX_DELIVERY_ID_CHARS:
        raise ApiError(400, "the delivery id is too long")
    again = f"delivery {delivery_id} was received before"
    try:
        with services().store.write() as tx:
            key = gitwebhook.delivery_key(delivery)
            if key is not None and not tx.record_delivery(key, now()):
                return again
            if not tx.record_delivery(gitwebhook.body_key(body), now()):
                _refuse(delivery, "a body received before, under another delivery id or none")
                return "this body was received before: a signed body is acted on once"
    except IntegrityError:  # the same delivery, arriving twice at once
        return again
    return None


def _ignored(reason: str) -> ResponseReturnValue:
    return {"accepted": False, "reason": reason}, 202


def _refuse(delivery: gitwebhook.Delivery | None, why: str) -> None:
    """An audit line for a refused webhook: who and which delivery, never body or secret."""
    audit.warning(
        "git webhook refused (%s): provider=%s remote=%s delivery=%s",
        why,
        delivery.provider if delivery else "unknown",
        request.remote_addr,
        _shown(delivery.delivery_id if delivery else None),
    )


def _shown(value: str | None) -> str:
    """A header value safe to put in a log line (printable, short)."""
    if value is None:
        return "-"
    return "".join(c if c.isprintable() else "?" for c in value[:SHOWN_HEADER_CHARS])


@blueprint.get("/secrets")
def secrets_set() -> ResponseReturnValue:
    """Whether each `name` is set here (`headwater plan --server` warns of those that are
    not); never a value."""
    names = request.args.getlist("name")
    if len(names) > MAX_SECRET_NAMES:
        raise ApiError(400, f"at most {MAX_SECRET_NAMES} names at once")
    return {"secrets": [{"name": n, "set": services().secret_is_set(n)} for n in names]}


# -- flows ---------------------------------------------------------------------------------
@blueprint.get("/flows/search")
def search_flows() -> ResponseReturnValue:
    page = params.page(request)
    namespace, q = request.args.get("namespace"), request.args.get("q")
    with services().store.read() as tx:
        found = queries.search_flows(tx, page, namespace, q)
    return serialize.found(found, serialize.flow_summary)


@blueprint.get("/flows/<namespace>/<flow_id>")
def get_flow(namespace: str, flow_id: str) -> ResponseReturnValue:
    """The deployed flow, or with `?revision=N` that revision (also of a deleted flow)."""
    wanted = params.integer(request, "revision", 0, 1) or None
    with services().store.read() as tx:
        row = queries.flow(tx, namespace, flow_id)
        shown = tx.revision(namespace, flow_id, wanted) if row and wanted else None
    name = f"{namespace}.{flow_id}"
    if row is None:
        raise ApiError(404, f"flow {name} does not exist")
    if wanted is None:
        if row["deleted"]:
            gone = serialize.deleted_message(row)
            raise ApiError(404, gone.pop("message"), **gone)
        return _keys_hidden(serialize.flow_detail(row))
    if shown is None:
        raise ApiError(404, f"flow {name} has no revision {wanted}")
    if shown["deleted"]:
        raise ApiError(404, f"revision {wanted} of flow {name} deleted it; it has no source")
    return _keys_hidden(serialize.flow_detail(row, shown))


def _keys_hidden(detail: serialize.Json) -> serialize.Json:
    """The flow with its Webhook trigger keys masked in the source: a key is a password."""
    source = detail.get("source")
    if source:
        detail["source"] = flowsource.read(source).shown(source)
    return detail


@blueprint.get("/flows/<namespace>/<flow_id>/revisions")
def flow_revisions(namespace: str, flow_id: str) -> ResponseReturnValue:
    with services().store.read() as tx:
        rows = queries.flow_revisions(tx, namespace, flow_id)
    if not rows:
        raise ApiError(404, f"flow {namespace}.{flow_id} does not exist")
    return [serialize.revision(row) for row in rows]


@blueprint.route("/flows", methods=["GET", *WRITE_METHODS])
@blueprint.route("/flows/<path:_rest>", methods=["GET", *WRITE_METHODS])
def flows_come_from_git(_rest: str = "") -> NoReturn:
    """Flows cannot be created, changed or deleted through the API: git is the only way in."""
    if request.method in ("GET", "HEAD"):
        raise ApiError(404, f"no such resource: {request.path}")
    settings = services().web
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = sorted(set(adapter.allowed_methods()) - set(WRITE_METHODS))
    repository = serialize.public_repository(settings.repository)
    raise ApiError(
        405,
        f"flows come from git: change them with a commit to {repository} ({settings.branch})",
        {"Allow": ", ".join(allowed)},
    )


# -- executions ----------------------------------------------------------------------------
@blueprint.post("/executions/<namespace>/<flow_id>")
@write_call
def start_execution(namespace: str, flow_id: str) -> ResponseReturnValue:
    inputs, labels = params.execution_start(request)
    runs: list[Row] = []
    try:
        row = services().start_execution(namespace, flow_id, inputs, labels, runs)
    except FlowNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except InputsRefused as exc:
        raise ApiError(
            422,
            f"the inputs of {namespace}.{flow_id} were refused; nothing was started",
            errors=[problem.to_json() for problem in exc.problems],
        ) from None
    except HeadwaterError as exc:
        raise ApiError(400, str(exc)) from None
    audit.info(
        "execution %s of %s.%s started by %s", row["id"], namespace, flow_id, request.remote_addr
    )
    # As committed: read in the transaction that created it, not in another.
    return serialize.execution(_secrets_masked(None, [row])[0], runs, now())


@blueprint.get("/executions/search")
def search_executions() -> ResponseReturnValue:
    page = params.page(request)
    namespace, flow_id = request.args.get("namespace"), request.args.get("flowId")
    states = params.states(request)
    since, until = params.moment(request, "startDate"), params.moment(request, "endDate")
    with services().store.read() as tx:
        found = queries.search_executions(tx, page, namespace, flow_id, states, since, until)
        runs = queries.task_runs_of(tx, [row["id"] for row in found.results])
        found.results = _secrets_masked(tx, found.results)
    moment = now()
    return serialize.found(found, lambda row: serialize.execution(row, runs[row["id"]], moment))


@blueprint.get("/executions/<execution_id>")
def get_execution(execution_id: str) -> ResponseReturnValue:
    return _execution(execution_id)


def _execution(execution_id: str) -> ResponseReturnValue:
    with services().store.read() as tx:
        row = tx.execution(execution_id)
        runs = tx.task_runs(execution_id) if row else []
        shown = _secrets_masked(tx, [row]) if row else []
    if not shown:
        raise ApiError(404, f"execution {execution_id} does not exist")
    return serialize.execution(shown[0], runs, now())


def _secrets_masked(tx: Tx | None, rows: list[Row]) -> list[Row]:
    """Executions with the values of their SECRET inputs masked, as the page shows them
    (`tx` None: a read transaction of its own when a flow revision is not cached)."""
    secret: dict[tuple[str, str, int], frozenset[str]] = {}
    masked = []
    for row in rows:
        key = (row["namespace"], row["flow_id"], row["flow_revision"])
        if key not in secret:
            secret[key] = _secret_inputs(tx, key)
        inputs = row.get("inputs") or {}
        if secret[key] & set(inputs) or any(is_sealed(v) for v in inputs.values()):
            hidden = {
                k: HIDDEN if k in secret[key] or is_sealed(v) else v for k, v in inputs.items()
            }
            row = {**row, "inputs": hidden}
        masked.append(row)
    return masked


SECRET_INPUTS_CACHE = 4096  # flow revisions whose SECRET input ids this app remembers
SECRET_INPUTS_EXTENSION = "headwater.secret_inputs"


def _secret_inputs(tx: Tx | None, key: tuple[str, str, int]) -> frozenset[str]:
    """The SECRET input ids of a flow revision. A revision never changes, so they are
    read and parsed once per app, not on every read of an execution."""
    cache: dict[tuple[str, str, int], frozenset[str]]
    cache = current_app.extensions.setdefault(SECRET_INPUTS_EXTENSION, {})
    found = cache.get(key)
    if found is None:
        if tx is None:
            with services().store.read() as own:
                revision = own.revision(*key)
        else:
            revision = tx.revision(*key)
        found = flowsource.read(revision["source"] if revision else "").secret_inputs
        if revision is not None:  # a revision not yet there may come with the next deploy
            if len(cache) >= SECRET_INPUTS_CACHE:
                cache.clear()
            cache[key] = found
    return found


@blueprint.get("/logs/<execution_id>")
def execution_logs(execution_id: str) -> ResponseReturnValue:
    minimum = (request.args.get("minLevel") or "TRACE").upper()
    minimum = "WARN" if minimum == "WARNING" else minimum
    if minimum not in LEVELS:
        raise ApiError(400, f"minLevel must be one of {', '.join(LEVELS)}")
    after = params.integer(request, "after", 0, 0)
    before = params.integer(request, "before", 0, 1) or None
    limit = params.integer(request, "limit", DEFAULT_LOG_LINES, 1, MAX_LOG_LINES)
    levels = LEVELS[LEVELS.index(minimum) :] if minimum != LEVELS[0] else None
    with services().store.read() as tx:
        if tx.execution(execution_id) is None:
            raise ApiError(404, f"execution {execution_id} does not exist")
        rows = queries.execution_logs(
            tx, execution_id, levels, request.args.get("taskRunId"), after, limit, before
        )
    return [serialize.log_line(row) for row in rows]
