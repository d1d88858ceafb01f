"""Validated containers for raw inertial recordings and the checks behind them.

Every analysis in this package starts from an :class:`ImuRecording` (or
:class:`AccRecording`), whose construction rejects empty, non-finite, non-monotonic,
mis-shaped and saturated input with a typed error from :mod:`motion.errors`.
Method: input validation only (no citation needed); clipping detection follows the common
"samples at the rail" rule (e.g. GGIR's clipping score, Migueles et al. 2019, J Meas Phys Behav).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import (
    EmptyInputError,
    GapError,
    NonFiniteSampleError,
    NonMonotonicTimestampError,
    SampleRateError,
    SaturatedSignalError,
    ShapeError,
    TooFewSamplesError,
)

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

GRAVITY = 9.80665  # m/s², standard gravity


@dataclass(frozen=True)
class ValidationParams:
    """Limits applied when a recording is constructed."""

    min_rate_hz: float = 10.0
    max_rate_hz: float = 1000.0
    # fraction of samples allowed at the sensor's rail before the input is rejected
    max_saturated_fraction_acc: float = 0.02
    max_saturated_fraction_gyr: float = 0.0
    # a run of this many equal samples at a channel's extreme counts as clipping
    clip_run_min: int = 3
    # rails below these magnitudes are never treated as clipping when no range is given
    auto_clip_min_acc: float = 2.0 * GRAVITY
    auto_clip_min_gyr: float = np.deg2rad(250.0)


DEFAULT_VALIDATION = ValidationParams()


def _as_time(t: ArrayLike, name: str = "t") -> FloatArray:
    arr = np.asarray(t, dtype=np.float64)
    if arr.ndim != 1:
        raise ShapeError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise EmptyInputError(f"{name} holds no samples")
    if not np.isfinite(arr.sum()):
        bad = ~np.isfinite(arr)
        raise NonFiniteSampleError(
            f"{name}: {int(bad.sum())} non-finite timestamp(s), first at index {int(np.argmax(bad))}"
        )
    if arr.size > 1:
        d = np.diff(arr)
        back = d <= 0
        if np.any(back):
            i = int(np.argmax(back))
            raise NonMonotonicTimestampError(
                f"{name} must strictly increase: t[{i + 1}]={arr[i + 1]!r} <= t[{i}]={arr[i]!r} "
                f"({int(back.sum())} such step(s))"
            )
    return arr


def _as_xyz(x: ArrayLike, n: int, name: str) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ShapeError(f"{name} must have shape (N, 3), got {arr.shape}")
    if arr.shape[0] != n:
        raise ShapeError(f"{name} has {arr.shape[0]} samples but t has {n}")
    if not np.isfinite(arr.sum()):
        bad = ~np.all(np.isfinite(arr), axis=1)
        raise NonFiniteSampleError(
            f"{name}: {int(bad.sum())} sample(s) with NaN/Inf, first at index {int(np.argmax(bad))}"
        )
    return np.ascontiguousarray(arr)


def saturated_mask(x: FloatArray, rail: float | None, auto_min: float, run_min: int) -> BoolArray:
    """Samples (rows) where any channel sits at the sensor rail.

    With a known ``rail`` (the sensor's full-scale range) a sample is saturated when
    ``|x| >= 0.999 * rail``. Without it, a channel counts as clipped when at least ``run_min``
    consecutive samples repeat its extreme absolute value and that value exceeds ``auto_min``.
    """
    out = np.zeros(x.shape[0], dtype=bool)
    # whole-array extremes first (fast): most recordings never reach a rail
    overall = max(float(x.max()), -float(x.min())) if x.size else 0.0
    if rail is not None:
        if overall < 0.999 * rail:
            return out
        return np.asarray(np.any(np.abs(x) >= 0.999 * rail, axis=1))
    if x.shape[0] < run_min or overall < auto_min:
        return out
    for c in range(x.shape[1]):
        col = x[:, c]
        top = max(float(col.max()), -float(col.min()))
        if top < auto_min:
            continue
        at = np.abs(col) >= top * (1.0 - 1e-9)
        if at.sum() < run_min:
            continue
        # only runs of >= run_min consecutive rail samples
        k = np.convolve(at.astype(np.int64), np.ones(run_min, dtype=np.int64), "valid") >= run_min
        if np.any(k):
            idx = np.flatnonzero(k)
            run = np.zeros(x.shape[0] + 1, dtype=np.int64)
            np.add.at(run, idx, 1)
            np.add.at(run, idx + run_min, -1)
            out |= np.cumsum(run)[:-1] > 0
    return out


def _check_saturation(
    x: FloatArray, rail: float | None, auto_min: float, limit: float, run_min: int, name: str
) -> int:
    sat = saturated_mask(x, rail, auto_min, run_min)
    count = int(sat.sum())
    if count and count > limit * x.shape[0]:
        raise SaturatedSignalError(
            f"{name}: {count} of {x.shape[0]} samples at the sensor rail "
            f"(limit {limit:.1%}), first at index {int(np.argmax(sat))}"
        )
    return count


def _nominal_rate(t: FloatArray, params: ValidationParams) -> float:
    if t.size < 2:
        return float("nan")
    rate = 1.0 / float(np.median(np.diff(t)))
    if not params.min_rate_hz <= rate <= params.max_rate_hz:
        raise SampleRateError(
            f"median sampling rate {rate:.3g} Hz outside [{params.min_rate_hz}, {params.max_rate_hz}] Hz"
        )
    return rate


def _row_block_means(x: FloatArray, k: int, n: int) -> FloatArray:
    """Means of consecutive blocks of ``k`` rows of ``x[:n]`` (N, 3), summed in row order: the
    same values as a reshaped ``mean(axis=1)``, without its strided reduction."""
    out = x[0:n:k].copy()
    for i in range(1, k):
        out += x[i:n:k]
    out /= k
    return out


@dataclass(frozen=True)
class ImuRecording:
    """One body-worn IMU: timestamps in s, accelerometer in m/s², gyroscope in rad/s.

    Construction validates the data; ``acc_range``/``gyr_range`` are the sensor's full-scale
    ranges (m/s², rad/s) when known, used to detect clipping.
    """

    t: FloatArray
    acc: FloatArray
    gyr: FloatArray
    acc_range: float | None = None
    gyr_range: float | None = None
    validation: ValidationParams = field(default=DEFAULT_VALIDATION, repr=False)
    rate_hz: float = field(init=False)
    acc_saturated: int = field(init=False)
    gyr_saturated: int = field(init=False)

    def __post_init__(self) -> None:
        t = _as_time(self.t)
        acc = _as_xyz(self.acc, t.size, "acc")
        gyr = _as_xyz(self.gyr, t.size, "gyr")
        p = self.validation
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "acc", acc)
        object.__setattr__(self, "gyr", gyr)
        object.__setattr__(self, "rate_hz", _nominal_rate(t, p))
        object.__setattr__(
            self,
            "acc_saturated",
            _check_saturation(acc, self.acc_range, p.auto_clip_min_acc, p.max_saturated_fraction_acc,
                              p.clip_run_min, "acc"),
        )
        object.__setattr__(
            self,
            "gyr_saturated",
            _check_saturation(gyr, self.gyr_range, p.auto_clip_min_gyr, p.max_saturated_fraction_gyr,
                              p.clip_run_min, "gyr"),
        )

    def __len__(self) -> int:
        return int(self.t.size)

    def block_means(self, k: int) -> ImuRecording:
        """Means of consecutive blocks of ``k`` samples (a trailing partial block is dropped) as a
        recording at 1/k of the rate. Means of this validated recording are finite, increasing in
        time and no nearer the rail, so they are not validated again (the analysis' hot path)."""
        n = (len(self) // k) * k
        if n == 0:
            raise TooFewSamplesError(f"block means of {k} samples need at least {k} samples, got {len(self)}")
        t = self.t[:n].reshape(-1, k).mean(axis=1)
        low = object.__new__(ImuRecording)
        for name, value in (("t", t), ("acc", _row_block_means(self.acc, k, n)),
                            ("gyr", _row_block_means(self.gyr, k, n)), ("acc_range", self.acc_range),
                            ("gyr_range", self.gyr_range), ("validation", self.validation),
                            ("rate_hz", _nominal_rate(t, self.validation)),
                            ("acc_saturated", 0), ("gyr_saturated", 0)):
            object.__setattr__(low, name, value)
        return low

    def slice(self, start: int, stop: int) -> ImuRecording:
        """Samples ``start:stop`` as a new (re-validated) recording."""
        return ImuRecording(self.t[start:stop], self.acc[start:stop], self.gyr[start:stop],
                            self.acc_range, self.gyr_range, self.validation)


@dataclass(frozen=True)
class AccRecording:
    """Accelerometer-only recording (steps, wear): timestamps in s, acceleration in m/s²."""

    t: FloatArray
    acc: FloatArray
    acc_range: float | None = None
    validation: ValidationParams = field(default=DEFAULT_VALIDATION, repr=False)
    rate_hz: float = field(init=False)
    acc_saturated: int = field(init=False)

    def __post_init__(self) -> None:
        t = _as_time(self.t)
        acc = _as_xyz(self.acc, t.size, "acc")
        p = self.validation
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "acc", acc)
        object.__setattr__(self, "rate_hz", _nominal_rate(t, p))
        object.__setattr__(
            self,
            "acc_saturated",
            _check_saturation(acc, self.acc_range, p.auto_clip_min_acc, p.max_saturated_fraction_acc,
                              p.clip_run_min, "acc"),
        )

    def __len__(self) -> int:
        return int(self.t.size)


def gap_starts(t: FloatArray, max_gap_s: float) -> NDArray[np.intp]:
    """Indices ``i`` where ``t[i] - t[i-1] > max_gap_s`` (the first sample after each gap)."""
    return np.asarray(np.flatnonzero(np.diff(t) > max_gap_s) + 1, dtype=np.intp)


def contiguous_segments(t: FloatArray, max_gap_s: float) -> list[tuple[int, int]]:
    """``(start, stop)`` index ranges of the recording split at gaps longer than ``max_gap_s``."""
    cuts = gap_starts(t, max_gap_s)
    edges = np.concatenate(([0], cuts, [t.size]))
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def require_contiguous(t: FloatArray, max_gap_s: float, what: str) -> None:
    """Raise :class:`GapError` when ``t`` has a gap longer than ``max_gap_s``."""
    cuts = gap_starts(t, max_gap_s)
    if cuts.size:
        i = int(cuts[0])
        raise GapError(
            f"{what}: {cuts.size} gap(s) longer than {max_gap_s} s, first between t={t[i - 1]!r} "
            f"and t={t[i]!r}; split with contiguous_segments() first"
        )


def require_samples(n: int, need: int, what: str) -> None:
    """Raise :class:`TooFewSamplesError` when fewer than ``need`` samples are present."""
    if n < need:
        raise TooFewSamplesError(f"{what} needs at least {need} samples, got {n}")


def drop_nonfinite(t: ArrayLike, *channels: ArrayLike) -> tuple[tuple[FloatArray, ...], int]:
    """Explicitly remove samples whose timestamp or any channel value is NaN/Inf.

    Returns the cleaned ``(t, *channels)`` and the number of samples removed; the removed
    samples become gaps, which :func:`contiguous_segments` (and the analysis entry points) then
    treat as missing data rather than interpolating over them.
    """
    tt = np.asarray(t, dtype=np.float64)
    arrs = [np.asarray(c, dtype=np.float64) for c in channels]
    ok = np.isfinite(tt)
    for a in arrs:
        if a.shape[0] != tt.shape[0]:
            raise ShapeError(f"channel has {a.shape[0]} samples but t has {tt.shape[0]}")
        ok &= np.all(np.isfinite(a.reshape(a.shape[0], -1)), axis=1)
    return (tt[ok], *(a[ok] for a in arrs)), int((~ok).sum())
