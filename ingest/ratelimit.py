"""Per-device token buckets, in memory. Each gateway instance limits on its own: behind a load
balancer with N instances a device gets at most N times the rate, which is what a limit meant to
stop a runaway client (not to meter usage) needs."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucketLimiter:
    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 200_000,
    ) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` tokens; return 0 when allowed, else the seconds until it would be."""
        now = self.clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= cost:
            self._buckets[key] = (tokens - cost, now)
            if len(self._buckets) > self.max_keys:
                self._prune(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (cost - tokens) / self.rate if self.rate > 0 else 3600.0

    def peek(self, key: str, cost: float = 1.0) -> float:
        """Like `acquire` without taking anything: 0 when `cost` tokens are there."""
        now = self.clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= cost:
            return 0.0
        return (cost - tokens) / self.rate if self.rate > 0 else 3600.0

    def _prune(self, now: float) -> None:
        # Buckets that have refilled completely carry no state worth keeping.
        full = [k for k, (t, last) in self._buckets.items() if t + (now - last) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
