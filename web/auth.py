"""Who may write: a bearer token when one is configured, nobody in read-only mode.

Git webhooks prove themselves with their signature (gitwebhook.py), not the token.
Tokens are compared in constant time and never written to a log or an answer.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import request

from headwater.web.errors import ApiError
from headwater.web.seam import services

audit = logging.getLogger("headwater.audit")

P = ParamSpec("P")
R = TypeVar("R")

CHALLENGE = 'Bearer realm="headwater"'


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer …` header, if there is one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def check_write() -> None:
    """Raise ApiError (403 read-only, 401 no or wrong token) unless this caller may write."""
    settings = services().web
    if settings.read_only:
        raise ApiError(403, "this daemon is read-only: it accepts no write calls")
    if settings.api_token is None:
        return
    given = bearer_token()
    if given is None:
        raise ApiError(
            401,
            "this call needs a token: send Authorization: Bearer <token>",
            {"WWW-Authenticate": CHALLENGE},
        )
    if not token_matches(given, settings.api_token):
        audit.warning(
            "refused %s %s from %s: wrong bearer token",
            request.method,
            request.path,
            request.remote_addr,
        )
        raise ApiError(
            401,
            "the bearer token is not valid",
            {"WWW-Authenticate": f'{CHALLENGE}, error="invalid_token"'},
        )


def write_call(view: Callable[P, R]) -> Callable[P, R]:
    """Decorate a view that changes something: it runs only for a caller who may write."""

    @functools.wraps(view)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        check_write()
        return view(*args, **kwargs)

    return checked
