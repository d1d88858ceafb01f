"""Back-off delays for the loops that run forever and retry what failed (a worker's agents and
timers, the gateway's outbox relay, a hub's BLE reconnects and uploads), from tenacity's wait
strategies so that every part backs off by the same, well-kept rule. Calls that retry one piece of
work until it succeeds use tenacity's `AsyncRetrying` with `Backoff.strategy()` directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tenacity import RetryCallState, Retrying, wait_exponential, wait_random_exponential
from tenacity.wait import wait_base


@dataclass
class Backoff:
    """initial_s, 2 x initial_s, 4 x ... up to max_s; with `jitter`, each a random delay between
    initial_s / 2 and that (jitter spreads clients that failed together, Brooker 2015, "Exponential
    Backoff And Jitter"). `next()` counts consecutive failures until `reset()`."""

    initial_s: float = 1.0
    max_s: float = 60.0
    jitter: bool = False
    failures: int = 0
    not_before: float = 0.0  # monotonic instant before which `waiting()` is true

    def strategy(self) -> wait_base:
        if self.jitter:
            return wait_random_exponential(multiplier=self.initial_s, max=self.max_s, min=self.initial_s / 2)
        return wait_exponential(multiplier=self.initial_s, max=self.max_s)

    def delay(self, attempt: int) -> float:
        """The delay after failure number `attempt` + 1 (attempt 0: the first failure)."""
        state = RetryCallState(Retrying(), None, (), {})
        state.attempt_number = max(0, attempt) + 1
        return float(self.strategy()(state))

    def next(self) -> float:
        """Note one more failure and return the delay before the next try."""
        delay = self.delay(self.failures)
        self.failures += 1
        self.not_before = time.monotonic() + delay
        return delay

    def waiting(self) -> bool:
        return time.monotonic() < self.not_before

    def reset(self) -> None:
        self.failures = 0
        self.not_before = 0.0
