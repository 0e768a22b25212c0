"""Reading what a request asks: paging, filters, and the inputs of a new execution.

Every problem is an ApiError 400 (or 415) that says which parameter and what is wanted.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import Request
from werkzeug.datastructures import FileStorage

from headwater.daemon.engine.inputs import UploadedFile
from headwater.daemon.engine.states import State
from headwater.daemon.store.queries import Page
from headwater.web import jsonbody
from headwater.web.auth import CSRF_FIELD
from headwater.web.errors import ApiError

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 500
COMMIT = re.compile(r"[0-9a-fA-F]{4,64}")
"""What `POST /api/v1/sync {"to": …}` takes: a commit sha, full or abbreviated."""
BODY_KEYS = {"inputs", "labels"}


def integer(request: Request, name: str, default: int, low: int, high: int | None = None) -> int:
    text = request.args.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {text[:40]!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(400, f"{name} must be {bounds}, got {value}")
    return value


def page(request: Request) -> Page:
    return Page(
        integer(request, "page", 1, 1),
        integer(request, "size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE),
    )


def states(request: Request) -> list[str]:
    """`state=RUNNING&state=FAILED` (or comma-separated), each a known state."""
    given = [s.strip().upper() for v in request.args.getlist("state") for s in v.split(",")]
    unknown = [s for s in given if s and s not in State.__members__]
    if unknown:
        known = ", ".join(State.__members__)
        raise ApiError(400, f"unknown state {unknown[0]!r}; states are {known}")
    return [s for s in given if s]


def moment(request: Request, name: str) -> float | None:
    """An RFC 3339 time (`2026-01-31T12:00:00Z`) as seconds since the epoch, or None."""
    text = request.args.get(name)
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ApiError(
            400, f"{name} must be an RFC 3339 time like 2026-01-31T12:00:00Z, got {text[:40]!r}"
        ) from None
    if value.tzinfo is None:
        raise ApiError(400, f"{name} needs a time zone (Z or +01:00), got {text[:40]!r}")
    return value.timestamp()


def commit(body: Any) -> str | None:
    """The `to` of a sync request: None, or a commit sha."""
    if body is None:
        return None
    if not isinstance(body, dict):
        raise ApiError(400, 'the body must be a JSON object like {"to": "<commit sha>"}')
    to = body.get("to")
    if to is None:
        return None
    if not isinstance(to, str) or not COMMIT.fullmatch(to):
        raise ApiError(400, "to must be a commit sha (4 to 64 hexadecimal digits)")
    return to


def json_body(request: Request) -> Any:
    """The JSON body (whatever the content type says), None when empty; 400 when not JSON
    or nested deeper than jsonbody.MAX_DEPTH."""
    data = request.get_data(cache=True)
    if not data.strip():
        return None
    try:
        return jsonbody.loads(data)
    except jsonbody.TooDeep as exc:
        raise ApiError(400, f"the body is refused: {exc}") from None
    except ValueError:
        raise ApiError(400, "the body is not valid JSON") from None


# -- starting an execution -----------------------------------------------------------------
def execution_start(request: Request) -> tuple[dict[str, Any], dict[str, str]]:
    """(inputs, labels) of `POST /api/v1/executions/{namespace}/{id}`.

    Inputs come as JSON (`{"inputs": {…}, "labels": {…}}` or a flat object of inputs),
    or as form fields and files (multipart). Labels also come as repeated
    `labels=key:value` query parameters, as Kestra takes them.
    """
    labels = query_labels(request)
    if request.is_json:
        inputs, body_labels = _json_start(json_body(request))
        return inputs, {**labels, **body_labels}
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return form_inputs(request), labels
    if request.get_data(cache=True):
        raise ApiError(
            415,
            "send inputs as JSON (application/json) or as a form "
            "(multipart/form-data or application/x-www-form-urlencoded)",
        )
    return {}, labels


def _json_start(body: Any) -> tuple[dict[str, Any], dict[str, str]]:
    if body is None:
        return {}, {}
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object of inputs")
    wrapped = "inputs" in body and isinstance(body["inputs"], dict) and set(body) <= BODY_KEYS
    if not wrapped:
        return body, {}
    return dict(body["inputs"]), labels_of(body.get("labels"))


def labels_of(value: Any) -> dict[str, str]:
    """Labels as `{"key": "value"}` or Kestra's `[{"key": …, "value": …}]`."""
    if value is None:
        return {}
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list) and all(isinstance(i, dict) for i in value):
        pairs = [(i.get("key"), i.get("value")) for i in value]
    else:
        raise ApiError(400, 'labels must be an object {"key": "value"} or a list of {key, value}')
    labels: dict[str, str] = {}
    for key, item in pairs:
        if not isinstance(key, str) or not key or not isinstance(item, str | int | float | bool):
            raise ApiError(400, f"label {key!r} needs a non-empty name and a scalar value")
        labels[key] = str(item).lower() if isinstance(item, bool) else str(item)
    return labels


def query_labels(request: Request) -> dict[str, str]:
    labels: dict[str, str] = {}
    for text in request.args.getlist("labels"):
        key, colon, value = text.partition(":")
        if not colon or not key:
            raise ApiError(400, f"labels must be given as key:value, got {text[:60]!r}")
        labels[key] = value
    return labels


def form_inputs(request: Request) -> dict[str, Any]:
    """Form fields (a repeated field is a list) and files (each an UploadedFile)."""
    inputs: dict[str, Any] = {}
    for name, values in request.form.lists():
        if name == CSRF_FIELD:  # a page form's CSRF token is not an input
            continue
        inputs[name] = values[0] if len(values) == 1 else values
    for name, files in request.files.lists():
        uploads = [_upload(name, f) for f in files]
        inputs[name] = uploads[0] if len(uploads) == 1 else uploads
    return inputs


def _upload(name: str, storage: FileStorage) -> UploadedFile:
    return UploadedFile(storage.filename or name, storage.read())
