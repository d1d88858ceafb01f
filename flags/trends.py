"""Robust trend statistics on short clinical series: pure functions on numpy arrays.

ROM per session is noisy (sensor placement, effort, pain on the day) and comes in small samples
(6-20 sessions over 2-3 weeks), so everything here is rank- or median-based: one bad session can
neither create nor hide a trend.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from scipy import stats

FloatArray = npt.NDArray[np.float64]


def _as_series(y: npt.ArrayLike, x: npt.ArrayLike | None) -> tuple[FloatArray, FloatArray]:
    ys = np.asarray(y, dtype=np.float64)
    xs = np.arange(ys.size, dtype=np.float64) if x is None else np.asarray(x, dtype=np.float64)
    if ys.ndim != 1 or xs.shape != ys.shape:
        raise ValueError("x and y must be one-dimensional and of equal length")
    if not (np.all(np.isfinite(ys)) and np.all(np.isfinite(xs))):
        raise ValueError("x and y must be finite")
    if ys.size > 1 and not np.all(np.diff(xs) > 0):
        raise ValueError("x must be strictly increasing (one value per time point)")
    return xs, ys


@dataclass(frozen=True, slots=True)
class MannKendall:
    n: int
    s: int  # sum of sign(y_j - y_i) over i < j
    var_s: float
    z: float
    p: float  # two-sided
    tau: float  # S / (n(n-1)/2)


def mann_kendall(y: npt.ArrayLike, x: npt.ArrayLike | None = None, *, continuity: bool = True) -> MannKendall:
    """Mann-Kendall trend test (Mann 1945; Kendall 1975): S, its tie-corrected variance, normal z."""
    _, ys = _as_series(y, x)  # validates the order; MK needs only the order of x
    n = ys.size
    if n < 3:
        raise ValueError("the Mann-Kendall test needs at least 3 points")
    i, j = np.triu_indices(n, k=1)
    s = int(np.sign(ys[j] - ys[i]).sum())
    _, ties = np.unique(ys, return_counts=True)
    # Kendall (1975): every group of t tied values removes t(t-1)(2t+5)/18 from var(S).
    var_s = float((n * (n - 1) * (2 * n + 5) - np.sum(ties * (ties - 1) * (2 * ties + 5))) / 18.0)
    correction = np.sign(s) if continuity else 0  # continuity correction: S is an integer
    z = 0.0 if var_s <= 0 or s == 0 else (s - correction) / np.sqrt(var_s)
    p = float(2.0 * stats.norm.sf(abs(z)))
    return MannKendall(n=n, s=s, var_s=var_s, z=float(z), p=min(p, 1.0), tau=s / (n * (n - 1) / 2))


@dataclass(frozen=True, slots=True)
class TheilSen:
    slope: float
    intercept: float
    low: float  # confidence interval of the slope
    high: float


def theil_sen(y: npt.ArrayLike, x: npt.ArrayLike | None = None, *, confidence: float = 0.95) -> TheilSen:
    """Theil-Sen slope, the median of pairwise slopes (Theil 1950; Sen 1968), with Sen's interval."""
    xs, ys = _as_series(y, x)
    if ys.size < 2:
        raise ValueError("a slope needs at least 2 points")
    r = stats.theilslopes(ys, xs, alpha=confidence)  # scipy's `alpha` is the confidence level
    return TheilSen(float(r.slope), float(r.intercept), float(r.low_slope), float(r.high_slope))


class TrendStatus(StrEnum):
    IMPROVING = "improving"
    STALLED = "stalled"
    REGRESSING = "regressing"
    INSUFFICIENT = "insufficient"


@dataclass(frozen=True, slots=True)
class Trend:
    status: TrendStatus
    n: int
    span: float  # x units between the first and last point
    slope: float | None = None  # y units per x unit
    slope_low: float | None = None
    slope_high: float | None = None
    mk: MannKendall | None = None


def classify_trend(
    y: npt.ArrayLike,
    x: npt.ArrayLike,
    *,
    alpha: float,
    min_gain: float,
    min_loss: float,
    min_points: int,
    min_span: float,
) -> Trend:
    """Theil-Sen slope (Sen 1968) judged by a Mann-Kendall test (Mann 1945; Kendall 1975).

    improving: a significant rise of at least `min_gain` per x unit; regressing: a significant fall of
    at least `min_loss`; otherwise stalled. "Not significantly improving" is stalled, never improving.
    """
    xs, ys = _as_series(y, x)
    n = ys.size
    span = float(xs[-1] - xs[0]) if n else 0.0
    if n < max(min_points, 3) or span < min_span:
        return Trend(TrendStatus.INSUFFICIENT, n, span)
    ts = theil_sen(ys, xs, confidence=1.0 - alpha)
    mk = mann_kendall(ys, xs)
    significant = mk.p < alpha
    if significant and mk.s < 0 and ts.slope <= -min_loss:
        status = TrendStatus.REGRESSING
    elif significant and mk.s > 0 and ts.slope >= min_gain:
        status = TrendStatus.IMPROVING
    else:
        status = TrendStatus.STALLED
    return Trend(status, n, span, ts.slope, ts.low, ts.high, mk)


@dataclass(frozen=True, slots=True)
class RobustDeviation:
    value: float
    baseline_median: float
    mad_sigma: float  # 1.4826 * MAD of the baseline
    sigma: float  # mad_sigma, floored
    z: float  # (value - median) / sigma
    n_baseline: int


def robust_deviation(value: float, baseline: npt.ArrayLike, *, sigma_floor: float) -> RobustDeviation:
    """Robust z against a baseline's median and normal-consistent MAD (Hampel 1974; Leys et al. 2013)."""
    base = np.asarray(baseline, dtype=np.float64)
    if base.ndim != 1 or base.size == 0 or not np.all(np.isfinite(base)) or not np.isfinite(value):
        raise ValueError("baseline must be a non-empty finite 1-d series and value finite")
    med = float(np.median(base))
    mad_sigma = float(stats.median_abs_deviation(base, scale="normal"))
    # Identical baseline sessions give MAD 0: the floor keeps a one-degree dip from being "infinite".
    sigma = max(mad_sigma, sigma_floor)
    return RobustDeviation(float(value), med, mad_sigma, sigma, (float(value) - med) / sigma, int(base.size))
