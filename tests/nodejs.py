"""Node.js for the tests of Node script tasks and the corpus flows that need `node`.

`scripts/services.d/node` installs Debian's nodejs when `node` is missing. Without it
the tests skip on a laptop and fail under CI=true, where nothing may skip for want of
a service.
"""

from __future__ import annotations

import os
import shutil

import pytest

SERVICE = "scripts/services.d/node"


def unavailable_reason() -> str | None:
    """Why Node tests cannot run here (None: they can); under CI=true, a failure."""
    if shutil.which("node") is not None:
        return None
    reason = f"node is not installed; run {SERVICE} (installs Debian's nodejs)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    return reason


def require_node() -> None:
    """Skip the test without `node`; under CI=true, fail it instead."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
