"""What keeps a worker alive through its dependencies' failures, and honest about its health.

A database or broker that restarts, a deadlock or a serialization failure is transient: the work
is retried with exponential back-off with jitter (tenacity, through `rtm.retrying.Backoff`) and
nothing is acknowledged meanwhile. Every failure and
recovery is noted in `HEALTH`, which `/ready/` reports, so a worker that cannot work says so
instead of answering ready.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import TypeVar

import psycopg
from aiokafka.errors import KafkaError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from processors import metrics
from rtm.retrying import Backoff

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Errors that go away by themselves: retry them, never die of them.

    psycopg's OperationalError covers a lost or refused connection, a server shutting down, a pool
    that could not hand out a connection in time, and (as TransactionRollback) deadlocks and
    serialization failures."""
    return isinstance(exc, psycopg.OperationalError | KafkaError | ConnectionError | TimeoutError)


@dataclass
class Health:
    """What this worker cannot do right now, by component (an agent, a timer, the topic guard)."""

    failing: dict[str, str] = field(default_factory=dict)
    since: dict[str, float] = field(default_factory=dict)

    def ok(self, component: str) -> None:
        if self.failing.pop(component, None) is not None:
            log.warning("%s recovered after %.1f s", component, time.monotonic() - self.since.pop(component))

    def failed(self, component: str, exc: BaseException) -> None:
        self.failing[component] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
        self.since.setdefault(component, time.monotonic())
        metrics.WORKER_ERRORS.labels(component, "transient" if is_transient(exc) else "error").inc()


HEALTH = Health()


def _backoff(max_s: float) -> Backoff:
    return Backoff(initial_s=0.5, max_s=max_s, jitter=True)


async def retry(component: str, work: Callable[[], Awaitable[T]], max_backoff_s: float) -> T:
    """Run `work` until it succeeds, backing off on transient errors (others propagate)."""

    def note(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None:
            HEALTH.failed(component, exc)
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s: %s; retrying in %.1f s", component, HEALTH.failing.get(component), delay)

    async for attempt in AsyncRetrying(retry=retry_if_exception(is_transient), wait=_backoff(max_backoff_s).strategy(),
                                       before_sleep=note, reraise=True):
        with attempt:
            result = await work()
    HEALTH.ok(component)
    return result


def guarded(component: str, max_backoff_s: float) -> Callable[[Callable[[], Awaitable[None]]],
                                                              Callable[[], Awaitable[None]]]:
    """For timer bodies: an error of one run is logged, reported on /ready/ and backed off from,
    never allowed to end the worker (faust crashes the whole app on a timer's exception)."""

    def decorate(body: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        backoff = _backoff(max_backoff_s)

        @wraps(body)
        async def run() -> None:
            if backoff.waiting():
                return
            try:
                await body()
            except Exception as exc:
                HEALTH.failed(component, exc)
                delay = backoff.next()
                log.warning("%s failed (%s); next attempt in %.1f s", component, HEALTH.failing[component], delay,
                            exc_info=not is_transient(exc))
                return
            backoff.reset()
            HEALTH.ok(component)

        return run

    return decorate
