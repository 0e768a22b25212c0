"""Errors as JSON under /api/v1 and on the health checks: `{"message": …, …}`.

Views raise `ApiError` (or let Flask raise its HTTP exceptions); the handlers here
turn both into JSON with the right status. Any other exception answers 500 with a
generic message: its text may hold what a caller should not see, so it goes to the log.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from headwater.daemon.store.writes import store_unavailable

log = logging.getLogger(__name__)

JSON_PREFIXES = ("/api/", "/healthz", "/readyz")
RETRY_AFTER_SECONDS = "5"  # what a 503 for an unwritable store suggests


class ApiError(Exception):
    """An answer other than success: status, message, and any further fields."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None, **fields: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.fields = fields


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **fields: Any
) -> Response:
    response = jsonify({"message": message, **fields})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _wants_json() -> bool:
    return request.path.startswith(JSON_PREFIXES)


def _api_error(error: ApiError) -> Response:
    return error_response(error.status, error.message, error.headers, **error.fields)


def _http_error(error: HTTPException) -> Response | HTTPException:
    if not _wants_json():
        return error
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    return error_response(error.code or 500, error.description or error.name, headers)


def _unexpected(error: Exception) -> Response | HTTPException:
    if isinstance(error, HTTPException):  # Flask routes these to _http_error first
        return _http_error(error)
    unavailable = store_unavailable(error)
    if unavailable is not None:  # nothing was recorded: the caller may try again later
        log.warning("%s %s: %s", request.method, request.path, unavailable)
        if not _wants_json():
            return ServiceUnavailable(unavailable)
        return error_response(503, unavailable, {"Retry-After": RETRY_AFTER_SECONDS})
    log.exception("%s %s failed", request.method, request.path)
    if not _wants_json():
        return InternalServerError()
    return error_response(500, "internal error; the daemon's log says more")


def register(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
