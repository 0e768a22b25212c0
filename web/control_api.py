"""Execution control under /api/v1/executions/{id}: kill, restart, replay, resume.

Paths follow Kestra's. Every call is a write call (bearer token when one is set).
Answers: the execution's JSON (202 for a kill, which may still be stopping processes;
200 otherwise; a replay answers the new execution), 404 for an unknown execution or
task run, 409 when the execution's state does not allow the call (the message says
which state and what would), 422 when a replay's new inputs are refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from headwater.daemon.engine.control import TaskRunNotFound
from headwater.daemon.engine.inputs import InputsRefused
from headwater.daemon.errors import ExecutionNotFound, ExecutionStateConflict, HeadwaterError
from headwater.daemon.store.store import Row
from headwater.web import params, serialize
from headwater.web.auth import write_call
from headwater.web.errors import ApiError
from headwater.web.seam import now, services

audit = logging.getLogger("headwater.audit")

blueprint = Blueprint("control_api", __name__, url_prefix="/api/v1")

REPLAY_KEYS = {"taskRunId", "inputs"}
RESUME_KEYS = {"inputs"}


@blueprint.route("/executions/<execution_id>/kill", methods=["POST", "DELETE"])
@write_call
def kill(execution_id: str) -> ResponseReturnValue:
    row = _control(lambda: services().kill_execution(execution_id))
    audit.info("execution %s killed by %s", execution_id, request.remote_addr)
    return _answer(row, 202)


@blueprint.post("/executions/<execution_id>/restart")
@write_call
def restart(execution_id: str) -> ResponseReturnValue:
    row = _control(lambda: services().restart_execution(execution_id))
    audit.info("execution %s restarted by %s", execution_id, request.remote_addr)
    return _answer(row)


@blueprint.post("/executions/<execution_id>/replay")
@write_call
def replay(execution_id: str) -> ResponseReturnValue:
    """Body (optional): `{"taskRunId": …, "inputs": {…}}`; `?taskRunId=` works too."""
    body = _object(REPLAY_KEYS)
    task_run_id = body.get("taskRunId") or request.args.get("taskRunId") or None
    if task_run_id is not None and not isinstance(task_run_id, str):
        raise ApiError(400, "taskRunId must be the id of a task run (a string)")
    inputs = _inputs(body)
    row = _control(lambda: services().replay_execution(execution_id, task_run_id, inputs))
    audit.info("execution %s replayed as %s by %s", execution_id, row["id"], request.remote_addr)
    return _answer(row)


@blueprint.post("/executions/<execution_id>/resume")
@write_call
def resume(execution_id: str) -> ResponseReturnValue:
    """Body (optional): `{"inputs": {…}}`, or inputs as form fields."""
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        inputs: dict[str, Any] | None = params.form_inputs(request) or None
    else:
        inputs = _inputs(_object(RESUME_KEYS))
    row = _control(lambda: services().resume_execution(execution_id, inputs))
    audit.info("execution %s resumed by %s", execution_id, request.remote_addr)
    return _answer(row)


def _object(keys: set[str]) -> dict[str, Any]:
    body = params.json_body(request)
    if body is None:
        return {}
    if not isinstance(body, dict) or not set(body) <= keys:
        wanted = ", ".join(sorted(keys))
        raise ApiError(400, f"the body must be a JSON object with only these fields: {wanted}")
    return body


def _inputs(body: dict[str, Any]) -> dict[str, Any] | None:
    inputs = body.get("inputs")
    if inputs is not None and not isinstance(inputs, dict):
        raise ApiError(400, 'inputs must be a JSON object like {"name": "value"}')
    return inputs


def _control(call: Callable[[], Row]) -> Row:
    """Run a control call; its errors become answers that say what to do."""
    try:
        return call()
    except (ExecutionNotFound, TaskRunNotFound) as exc:
        raise ApiError(404, str(exc)) from None
    except ExecutionStateConflict as exc:
        raise ApiError(409, str(exc), state=exc.state) from None
    except InputsRefused as exc:
        raise ApiError(
            422,
            "the inputs were refused; nothing was started",
            errors=[problem.to_json() for problem in exc.problems],
        ) from None
    except HeadwaterError as exc:
        raise ApiError(400, str(exc)) from None


def _answer(row: Row, status: int = 200) -> ResponseReturnValue:
    with services().store.read() as tx:
        current = tx.execution(row["id"]) or row
        runs = tx.task_runs(row["id"])
    return serialize.execution(current, runs, now()), status
