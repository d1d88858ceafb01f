"""Small linear-filter helpers shared by the algorithms (all O(N), no per-sample Python).

Method: centred moving averages via cumulative sums; zero-phase Butterworth filtering via
forward-backward second-order sections (Gustafsson 1996, IEEE Trans. Signal Process. 44(4)).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy import signal

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]


def moving_mean(x: FloatArray, width: int) -> FloatArray:
    """Centred moving mean over ``width`` samples along axis 0 (shrinking window at the ends)."""
    n = x.shape[0]
    width = max(int(width), 1)
    c = np.empty((n + 1, *x.shape[1:]))
    c[0] = 0.0
    np.cumsum(x, axis=0, out=c[1:])
    half = width // 2
    if width > n:
        idx = np.arange(n)
        i0 = np.clip(idx - half, 0, n)
        i1 = np.clip(idx - half + width, 0, n)
        cnt = (i1 - i0).astype(np.float64).reshape((n,) + (1,) * (x.ndim - 1))
        return np.asarray((c[i1] - c[i0]) / cnt)
    # full windows by slices (a hot path: no index arrays), the shrinking ends by their counts
    out = np.empty((n, *x.shape[1:]))
    np.subtract(c[width:], c[:n + 1 - width], out=out[half:n + 1 - width + half])
    out[half:n + 1 - width + half] /= float(width)
    head = np.arange(half)
    out[:half] = (c[head - half + width] - c[0]) / (head - half + width).astype(np.float64).reshape(
        (half,) + (1,) * (x.ndim - 1))
    tail = np.arange(n + 1 - width + half, n)
    out[n + 1 - width + half:] = (c[n] - c[tail - half]) / (n - tail + half).astype(np.float64).reshape(
        (tail.size,) + (1,) * (x.ndim - 1))
    return out


def moving_std(x: FloatArray, width: int) -> FloatArray:
    """Centred moving standard deviation (population) over ``width`` samples along axis 0."""
    m = moving_mean(x, width)
    m2 = moving_mean(x * x, width)
    return np.asarray(np.sqrt(np.maximum(m2 - m * m, 0.0)))


@lru_cache(maxsize=128)
def butter_sos(order: int, cutoff_hz: float, rate_hz: float, btype: str = "lowpass") -> FloatArray:
    """Butterworth second-order sections (cached: designs repeat for every bout and window)."""
    return np.asarray(signal.butter(order, cutoff_hz, btype=btype, fs=rate_hz, output="sos"))


def lowpass_zero_phase(x: FloatArray, cutoff_hz: float, rate_hz: float, order: int = 2) -> FloatArray:
    """Zero-phase Butterworth low-pass along axis 0; short inputs fall back to the mean."""
    sos = butter_sos(order, float(cutoff_hz), float(rate_hz)).copy()
    padlen = 3 * (2 * len(sos) + 1)
    n = x.shape[0]
    if n <= padlen:
        return np.broadcast_to(x.mean(axis=0), x.shape).copy()
    # odd extension over up to ~one filter time constant keeps the ends unbiased
    pad = int(min(n - 1, max(padlen, round(rate_hz / cutoff_hz))))
    return np.asarray(signal.sosfiltfilt(sos, x, axis=0, padtype="odd", padlen=pad))


def highpass(x: FloatArray, cutoff_hz: float, rate_hz: float, order: int = 2) -> FloatArray:
    """Zero-phase Butterworth high-pass along axis 0."""
    sos = butter_sos(order, float(cutoff_hz), float(rate_hz), "highpass").copy()
    padlen = 3 * (2 * len(sos) + 1)
    if x.shape[0] <= padlen:
        return np.asarray(x - x.mean(axis=0))
    return np.asarray(signal.sosfiltfilt(sos, x, axis=0))


def runs(mask: NDArray[np.bool_]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Start and stop (exclusive) indices of the runs of True in a boolean array."""
    m = np.concatenate(([False], np.asarray(mask, dtype=bool), [False]))
    d = np.diff(m.astype(np.int8))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def keep_long_runs(mask: NDArray[np.bool_], min_len: int) -> NDArray[np.bool_]:
    """Keep only runs of True at least ``min_len`` samples long."""
    starts, stops = runs(mask)
    keep = (stops - starts) >= min_len
    out = np.zeros(mask.shape[0] + 1, dtype=np.int64)
    np.add.at(out, starts[keep], 1)
    np.add.at(out, stops[keep], -1)
    return np.asarray(np.cumsum(out)[:-1] > 0)


_SLICE_SUM_MAX = 8  # numpy sums runs of up to 8 one after the other (longer ones pairwise)


@dataclass(frozen=True)
class Blocks:
    """Consecutive sample blocks of (nearly) equal length used for block means."""

    starts: IntArray
    counts: FloatArray
    size: int

    @classmethod
    def make(cls, n: int, rate_hz: float, block_rate_hz: float) -> Blocks:
        size = max(int(rate_hz // block_rate_hz), 1)
        starts = np.arange(0, n, size, dtype=np.intp)
        counts = np.diff(np.append(starts, n)).astype(np.float64)
        return cls(starts, counts, size)

    def mean(self, x: FloatArray) -> FloatArray:
        """Block means of component-major data (C, N) -> (C, B)."""
        d, full = self.size, x.shape[1] // self.size
        if not 1 < d <= _SLICE_SUM_MAX or full < 1:
            return np.asarray(np.add.reduceat(x, self.starts, axis=1) / self.counts)
        # short blocks: strided slice sums (reduceat's per-block overhead dominates), in the order
        # reduceat adds them (the first sample, then the sum of the others): the same values
        m = full * d
        out = np.empty((x.shape[0], self.starts.size))
        rest = x[:, 1:m:d].copy()
        for i in range(2, d):
            rest += x[:, i:m:d]
        np.add(x[:, 0:m:d], rest, out=out[:, :full])
        if full < self.starts.size:
            out[:, full:] = np.add.reduceat(x[:, m:], [0], axis=1)
        out /= self.counts
        return out

    def expand(self, xb: NDArray[np.bool_], n: int) -> BoolArray:
        """Block flags back to samples."""
        return np.asarray(np.repeat(xb, self.counts.astype(np.intp))[:n])

    def interpolate(self, xb: FloatArray, n: int) -> FloatArray:
        """Piecewise-linear upsampling of block values (C, B) to every sample (C, N).

        The value at each block boundary is the mean of the two adjacent block values (held at
        the ends); samples are linearly interpolated between the boundaries of their block.
        """
        c, b = xb.shape
        d = self.size
        edges = np.empty((c, b + 1))
        edges[:, 1:b] = 0.5 * (xb[:, 1:] + xb[:, :-1])
        edges[:, 0] = xb[:, 0]
        edges[:, b] = xb[:, -1]
        frac = np.tile((np.arange(d) + 0.5) / d, b)[:n]
        out = np.repeat(edges[:, :-1], d, axis=1)[:, :n]
        out += np.repeat(np.diff(edges, axis=1), d, axis=1)[:, :n] * frac
        return np.asarray(out)
