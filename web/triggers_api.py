"""Triggers under /api/v1/triggers: backfill a schedule over a past range.

`POST /api/v1/triggers/{namespace}/{flowId}/{triggerId}/backfill` with
`{"from": …, "to": …}` (RFC 3339; without an offset, on the schedule's wall clock)
queues the backfill and answers 202 with how many times it covers. The executions are
created by the scheduler at a bounded rate, each time once (docs/triggers.md). Answers
404 for an unknown flow or trigger, 409 while a backfill of that trigger runs, 400 for
a bad range (the message names the field).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from headwater.daemon.triggers.backfill import BackfillError, BackfillRunning, TriggerNotFound
from headwater.web import params
from headwater.web.auth import write_call
from headwater.web.errors import ApiError
from headwater.web.seam import services

audit = logging.getLogger("headwater.audit")

blueprint = Blueprint("triggers_api", __name__, url_prefix="/api/v1/triggers")

BACKFILL_KEYS = {"from", "to"}


@blueprint.post("/<namespace>/<flow_id>/<trigger_id>/backfill")
@write_call
def backfill(namespace: str, flow_id: str, trigger_id: str) -> ResponseReturnValue:
    body = params.json_body(request)
    if not isinstance(body, dict) or not set(body) <= BACKFILL_KEYS:
        raise ApiError(
            400,
            'the body must be a JSON object {"from": …, "to": …} '
            "(RFC 3339 times such as 2026-01-31T00:00:00Z)",
        )
    start, end = _time(body, "from"), _time(body, "to")
    try:
        answer = services().backfill(namespace, flow_id, trigger_id, start, end)
    except TriggerNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except BackfillRunning as exc:
        raise ApiError(409, str(exc)) from None
    except BackfillError as exc:
        raise ApiError(400, str(exc)) from None
    audit.info(
        "backfill of %s.%s/%s (%s times) asked by %s",
        namespace,
        flow_id,
        trigger_id,
        answer["times"],
        request.remote_addr,
    )
    return answer, 202


def _time(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{name}: give a time such as 2026-01-31T00:00:00Z")
    return value
