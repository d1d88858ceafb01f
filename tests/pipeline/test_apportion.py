"""Per-minute apportioning of step intervals: exact totals, and an interval's split independent
of which other intervals are apportioned with it (a replay batched differently stores the same
minutes)."""

from __future__ import annotations

import numpy as np

from processors.activity import apportion_to_minutes


def _split(start: np.ndarray, end: np.ndarray, steps: np.ndarray) -> dict[int, int]:
    minutes, counts = apportion_to_minutes(start, end, steps)
    return dict(zip(minutes.tolist(), counts.tolist(), strict=True))


def test_totals_are_kept_and_minutes_cover_the_interval() -> None:
    minutes, counts = apportion_to_minutes(np.array([30.0]), np.array([150.0]), np.array([100]))
    assert minutes.tolist() == [0, 60, 120]
    assert counts.tolist() == [25, 50, 25]


def test_an_intervals_split_does_not_depend_on_its_neighbours() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        # Half-minute boundaries and odd counts make exact .5 ties, where float error shows.
        start = np.sort(rng.integers(0, 2_880, n)) * 30.0
        end = start + rng.integers(1, 30, n) * 30.0
        steps = rng.integers(0, 1_000, n) * 2 + 1
        # Intervals of one device do not overlap in practice: shift them apart so each minute
        # belongs to one interval and the per-interval split can be read off the joint result.
        start = start + np.arange(n) * 1_000.0
        end = end + np.arange(n) * 1_000.0
        together = _split(start, end, steps)
        alone: dict[int, int] = {}
        for i in range(n):
            for m, c in _split(start[i:i + 1], end[i:i + 1], steps[i:i + 1]).items():
                alone[m] = alone.get(m, 0) + c
        assert together == alone
        assert sum(together.values()) == int(steps.sum())
