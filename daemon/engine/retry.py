"""Retry policies: when the next attempt runs, and whether there is one."""

from __future__ import annotations

import random
from typing import Any

from headwater.daemon.flow.base import ConstantRetry, ExponentialRetry, RandomRetry
from headwater.daemon.flow.types import parse_duration

Policy = ConstantRetry | ExponentialRetry | RandomRetry


def seconds(value: Any, default: float = 0.0) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        parsed = parse_duration(value)
        if parsed is not None:
            return parsed
    return default


def max_attempts(policy: Policy) -> int | None:
    value = policy.maxAttempts if policy.maxAttempts is not None else policy.maxAttempt
    return int(value) if isinstance(value, int) else None


def delay_before(
    policy: Policy | None, attempt: int, first_start: float, now: float, rng: random.Random
) -> float | None:
    """Seconds to wait before attempt `attempt + 1`, or None when no attempt is left.

    `maxAttempts` counts the first attempt; `maxDuration` bounds all attempts together,
    the wait before the next one included.
    """
    if policy is None:
        return None
    limit = max_attempts(policy)
    if limit is not None and attempt >= limit:
        return None
    delay = _interval(policy, attempt, rng)
    budget = seconds(policy.maxDuration, 0.0) if policy.maxDuration is not None else None
    if budget is not None and now + delay - first_start > budget:
        return None
    if limit is None and budget is None:
        return None
    return delay


def _interval(policy: Policy, attempt: int, rng: random.Random) -> float:
    if isinstance(policy, RandomRetry):
        low = seconds(policy.minInterval)
        high = seconds(policy.maxInterval, low)
        return rng.uniform(low, max(low, high))
    base = seconds(policy.interval, 1.0)
    if isinstance(policy, ExponentialRetry):
        factor = float(policy.delayFactor) if isinstance(policy.delayFactor, int | float) else 2.0
        grown = base * factor ** max(attempt - 1, 0)
        cap = seconds(policy.maxInterval, grown) if policy.maxInterval is not None else grown
        return min(grown, cap)
    return base
