"""`GET|POST|PUT /api/v1/executions/webhook/{namespace}/{flowId}/{key}`: a flow's Webhook trigger.

The key in the URL is the caller's proof, so the call needs no bearer token; it is
never written to a log (lines name the flow, never the path). An unknown flow and a
wrong key get the same 404. The body (JSON when it parses, else text, at most
`max_webhook_bytes`), the headers and the query parameters reach the flow as
`trigger.body`, `trigger.headers` and `trigger.parameters`. JSON that nests deeper than
jsonbody.MAX_DEPTH is refused (400) rather than passed on as text.
"""

from __future__ import annotations

import logging

from flask import Blueprint, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from headwater.daemon.engine.flows import FlowNotFound
from headwater.daemon.engine.inputs import InputsRefused
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.triggers.webhook import HIDDEN_HEADERS, WebhookCall
from headwater.web import jsonbody, serialize
from headwater.web.errors import ApiError
from headwater.web.seam import now, services

log = logging.getLogger(__name__)
audit = logging.getLogger("headwater.audit")

blueprint = Blueprint("webhook_trigger", __name__, url_prefix="/api/v1")

NO_MATCH = "no webhook trigger matches this URL"
"""The one answer for an unknown flow, a deleted or disabled one, and a wrong key."""


@blueprint.route("/executions/webhook/<namespace>/<flow_id>/<key>", methods=["GET", "POST", "PUT"])
def webhook(namespace: str, flow_id: str, key: str) -> ResponseReturnValue:
    """Start an execution of the flow whose Webhook trigger has this key."""
    where = f"{namespace}.{flow_id}"
    if services().web.read_only:
        raise ApiError(403, "this daemon is read-only: webhooks start nothing")
    try:
        row = services().fire_webhook(namespace, flow_id, key, _call())
    except (ApiError, HTTPException):
        raise
    except FlowNotFound:
        row = None
    except InputsRefused as exc:
        raise ApiError(
            422,
            f"the webhook's inputs for {where} were refused; nothing was started",
            errors=[problem.to_json() for problem in exc.problems],
        ) from None
    except HeadwaterError as exc:
        raise ApiError(400, f"the webhook of {where} started nothing: {exc}") from None
    except Exception:  # logged here, without the URL: the app's handler would print the key
        log.exception("webhook call of %s failed", where)
        raise ApiError(500, "internal error; the daemon's log says more") from None
    if row is None:
        audit.info("webhook call refused: no match for %s from %s", where, request.remote_addr)
        raise ApiError(404, NO_MATCH)
    audit.info("webhook of %s started execution %s for %s", where, row["id"], request.remote_addr)
    return serialize.execution(row, [], now())


def _call() -> WebhookCall:
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        if name.lower() not in HIDDEN_HEADERS:
            headers.setdefault(name.lower(), []).append(value)
    parameters = dict(request.args.lists())
    return WebhookCall(request.method, _body(), headers, parameters)


def _body() -> object:
    """The body as JSON when it parses, else as text; None when there is none."""
    limit = services().web.max_webhook_bytes
    request.max_content_length = limit
    try:
        data = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise ApiError(413, f"the body is larger than {limit} bytes") from None
    if not data:
        return None
    text = data.decode("utf-8", "replace")
    try:
        return jsonbody.loads(text)
    except jsonbody.TooDeep as exc:
        raise ApiError(400, f"the body is refused: {exc}") from None
    except ValueError:
        return text
