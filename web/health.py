"""Liveness and readiness for supervisors and load balancers (no token: they say no secret)."""

from __future__ import annotations

import logging

from flask import Blueprint
from flask.typing import ResponseReturnValue

from headwater.web.seam import services

log = logging.getLogger(__name__)

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process answers."""
    return {"status": "ok"}


@blueprint.get("/readyz")
def readyz() -> ResponseReturnValue:
    """The store answers and the first sync has run (503 with the reason otherwise)."""
    try:
        ready, why = services().ready()
    except Exception:  # a readiness check that fails is an answer: not ready
        log.exception("the readiness check failed")
        ready, why = False, "the readiness check failed; the daemon's log says why"
    if not ready:
        return {"status": "unavailable", "message": why}, 503
    return {"status": "ready", "message": why}
