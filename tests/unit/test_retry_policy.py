"""Retry policies: the wait before each next attempt, and when there is none.

The engine tests (tests/integration/test_engine_failures.py) check that attempts
really wait at least these intervals; the exact intervals are checked here, without a
clock.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from headwater.daemon.engine.retry import Policy, delay_before
from headwater.daemon.flow.base import ConstantRetry, ExponentialRetry, RandomRetry

pytestmark = pytest.mark.unit


def policy(**raw: Any) -> Policy:
    kinds: dict[str, type[Policy]] = {
        "constant": ConstantRetry,
        "exponential": ExponentialRetry,
        "random": RandomRetry,
    }
    return kinds[raw["type"]].model_validate(raw)


def delays(retry: Policy, attempts: int = 10, seed: int = 1) -> list[float | None]:
    """The wait before attempt 2, 3, …: each asked right after the attempt before."""
    rng = random.Random(seed)
    return [delay_before(retry, n, 0.0, 0.0, rng) for n in range(1, attempts)]


def test_constant_waits_its_interval_until_the_attempts_are_used() -> None:
    retry = policy(type="constant", interval="PT0.1S", maxAttempts=3)
    assert delays(retry, 5) == [0.1, 0.1, None, None]


def test_exponential_grows_by_its_factor_up_to_its_max_interval() -> None:
    retry = policy(
        type="exponential", interval="PT0.1S", delayFactor=2, maxInterval="PT0.3S", maxAttempts=5
    )
    assert delays(retry, 5) == pytest.approx([0.1, 0.2, 0.3, 0.3])
    assert delays(retry, 6)[-1] is None


def test_exponential_without_a_max_interval_keeps_growing() -> None:
    retry = policy(type="exponential", interval="PT1S", delayFactor=3, maxAttempts=5)
    assert delays(retry, 5) == pytest.approx([1.0, 3.0, 9.0, 27.0])


def test_random_stays_between_its_bounds() -> None:
    retry = policy(type="random", minInterval="PT0.1S", maxInterval="PT0.3S", maxAttempts=50)
    waits = [d for d in delays(retry, 50) if d is not None]
    assert len(waits) == 49
    assert all(0.1 <= wait <= 0.3 for wait in waits)
    assert len(set(waits)) > 1


def test_max_duration_ends_retrying_when_the_next_start_would_pass_it() -> None:
    retry = policy(type="constant", interval="PT0.2S", maxAttempts=100, maxDuration="PT0.5S")
    rng = random.Random(1)
    assert delay_before(retry, 1, 0.0, 0.05, rng) == 0.2  # next start at 0.25
    assert delay_before(retry, 2, 0.0, 0.30, rng) == 0.2  # next start at 0.5: still within
    assert delay_before(retry, 3, 0.0, 0.55, rng) is None  # next start at 0.75: past it


def test_no_policy_or_no_limit_means_no_retry() -> None:
    rng = random.Random(1)
    assert delay_before(None, 1, 0.0, 0.0, rng) is None
    assert delay_before(policy(type="constant", interval="PT1S"), 1, 0.0, 0.0, rng) is None
    assert delay_before(policy(type="constant", maxAttempt=2), 1, 0.0, 0.0, rng) == 1.0
