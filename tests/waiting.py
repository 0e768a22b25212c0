"""Waiting for something to happen in another thread or process, without sleeping blind."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], timeout: float = 15.0, what: str = "", interval: float = 0.02
) -> T:
    """Poll `condition` until it returns something truthy and return that; fail the test
    after `timeout` seconds, naming `what` it waited for."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)
