"""The shared back-off (tenacity's wait strategies) and the worker's retry of transient errors."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from processors.resilience import HEALTH, guarded, retry
from rtm.retrying import Backoff


def test_exponential_delays_double_up_to_the_cap_and_reset() -> None:
    b = Backoff(0.5, 3.0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert b.failures == 5 and b.waiting()
    b.reset()
    assert b.next() == 0.5
    assert Backoff(1.0, 60.0).delay(0) == 1.0 and Backoff(1.0, 60.0).delay(10) == 60.0
    assert Backoff(1.0, 60.0).delay(10_000) == 60.0  # no overflow after days of failures


def test_jitter_stays_between_half_the_initial_delay_and_the_exponential_one() -> None:
    b = Backoff(0.5, 4.0, jitter=True)
    for n in range(8):
        d = b.delay(n)
        assert 0.25 <= d <= min(4.0, 0.5 * 2**n)
    assert len({b.delay(6) for _ in range(20)}) > 1


def test_retry_outlasts_transient_errors_and_lets_others_through() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise psycopg.OperationalError("server closed the connection")
        return "stored"

    assert asyncio.run(retry("test-retry", flaky, max_backoff_s=0.01)) == "stored"
    assert calls == 3 and "test-retry" not in HEALTH.failing

    async def broken() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        asyncio.run(retry("test-retry", broken, max_backoff_s=0.01))


def test_guarded_timer_backs_off_after_a_failure() -> None:
    runs = 0

    @guarded("test-timer", max_backoff_s=60.0)
    async def body() -> None:
        nonlocal runs
        runs += 1
        raise psycopg.OperationalError("database restarting")

    asyncio.run(body())
    asyncio.run(body())  # within the back-off: skipped
    assert runs == 1 and "test-timer" in HEALTH.failing
    HEALTH.ok("test-timer")
