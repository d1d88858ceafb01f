"""The analysis' hot-path helpers give the same values, bit for bit, as their plain formulations.

The throughput work changed how these are computed, never what: each is compared with the
straightforward version it replaced (index arrays, ``reduceat``, a reshaped mean, a per-sample
mask, ``flatnonzero``), on random data and at the edges (short inputs, partial blocks, windows
wider than the data).
"""

from __future__ import annotations

import numpy as np
import pytest

from motion.filters import Blocks, moving_mean
from motion.recording import GRAVITY, ImuRecording
from motion.reps import _covered, _first_at_or_below, count_cycles


def _moving_mean_by_index(x: np.ndarray, width: int) -> np.ndarray:
    n = x.shape[0]
    width = max(int(width), 1)
    c = np.empty((n + 1, *x.shape[1:]))
    c[0] = 0.0
    np.cumsum(x, axis=0, out=c[1:])
    half = width // 2
    idx = np.arange(n)
    i0 = np.clip(idx - half, 0, n)
    i1 = np.clip(idx - half + width, 0, n)
    cnt = (i1 - i0).astype(np.float64).reshape((n,) + (1,) * (x.ndim - 1))
    return np.asarray((c[i1] - c[i0]) / cnt)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 11, 257])
@pytest.mark.parametrize("width", [0, 1, 2, 3, 9, 10, 11, 256, 257, 258, 1000])
def test_moving_mean_matches_the_index_formulation(n: int, width: int) -> None:
    rng = np.random.default_rng(n * 1000 + width)
    for shape in ((n,), (n, 3)):
        x = 50.0 * rng.standard_normal(shape) + 7.0
        got = moving_mean(x, width)
        assert got.shape == x.shape
        assert np.array_equal(got, _moving_mean_by_index(x, width))


@pytest.mark.parametrize("size", range(1, 12))
@pytest.mark.parametrize("n", [1, 7, 8, 9, 100, 1001, 1003])
def test_block_means_match_reduceat(size: int, n: int) -> None:
    rng = np.random.default_rng(size * 10_000 + n)
    blocks = Blocks.make(n, 10.0 * size, 10.0)
    assert blocks.size == size
    for channels in (1, 3, 4):
        x = 10.0 * rng.standard_normal((channels, n)) + 3.0
        expected = np.add.reduceat(x, blocks.starts, axis=1) / blocks.counts
        assert np.array_equal(blocks.mean(x), expected)


@pytest.mark.parametrize("k", [2, 3, 4, 8])
def test_recording_block_means_match_a_validated_recording_of_the_means(k: int) -> None:
    rng = np.random.default_rng(k)
    n = 1003
    t = np.cumsum(rng.uniform(0.009, 0.011, n))
    acc = GRAVITY * np.array([0.0, 0.0, 1.0]) + rng.standard_normal((n, 3))
    gyr = rng.standard_normal((n, 3))
    rec = ImuRecording(t, acc, gyr)
    low = rec.block_means(k)
    m = (n // k) * k
    ref = ImuRecording(t[:m].reshape(-1, k).mean(axis=1), acc[:m].reshape(-1, k, 3).mean(axis=1),
                       gyr[:m].reshape(-1, k, 3).mean(axis=1))
    assert np.array_equal(low.t, ref.t) and np.array_equal(low.acc, ref.acc) and np.array_equal(low.gyr, ref.gyr)
    assert low.rate_hz == ref.rate_hz
    assert len(low) == n // k


def test_walking_coverage_matches_a_per_sample_mask() -> None:
    rng = np.random.default_rng(3)
    for _ in range(500):
        n = int(rng.integers(1, 300))
        count, width, hop = int(rng.integers(1, 40)), int(rng.integers(1, 60)), int(rng.integers(1, 10))
        start = np.minimum(np.arange(count) * hop, n - 1).astype(np.intp)
        stop = np.minimum(start + width, n).astype(np.intp)
        walking = rng.random(count) < rng.random()
        edges = np.zeros(n + 1)
        np.add.at(edges, start[walking], 1.0)
        np.add.at(edges, stop[walking], -1.0)
        before = np.concatenate(([0], np.cumsum(np.cumsum(edges[:-1]) > 0)))
        for x in (start, stop):
            assert np.array_equal(_covered(start[walking], stop[walking], x), before[x])


def test_first_at_or_below_matches_flatnonzero() -> None:
    rng = np.random.default_rng(4)
    for _ in range(500):
        x = rng.standard_normal(int(rng.integers(1, 30)))
        level = float(rng.standard_normal())
        hit = np.flatnonzero(x <= level)
        for reverse in (False, True):
            expected = (x.size - 1 if reverse else 0) if hit.size == 0 else int(hit[-1] if reverse else hit[0])
            assert _first_at_or_below(x, level, reverse) == expected


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_count_cycles_same_with_and_without_a_given_polarity(sign: float) -> None:
    """The polarity test's peaks are reused for the count when the trace is the same: the reps
    equal those counted with that polarity given."""
    t = np.arange(0.0, 40.0, 0.01)
    angle = sign * 30.0 * (1.0 - np.cos(2.0 * np.pi * t / 4.0)) + 0.5 * np.sin(2.0 * np.pi * 1.3 * t)
    found = count_cycles(t, angle, period_s=4.0)
    assert len(found) >= 9
    assert found == count_cycles(t, angle, period_s=4.0, polarity=sign)
