"""The trend maths on series with known slopes and noise, and against scipy's own statistics."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from scipy import stats

from flags.trends import (
    TrendStatus,
    classify_trend,
    mann_kendall,
    robust_deviation,
    theil_sen,
)

WEEK = 7.0
classify = partial(
    classify_trend, alpha=0.05, min_gain=1.0 / WEEK, min_loss=1.0 / WEEK, min_points=6, min_span=10.0
)


def sessions(n: int = 15, days: float = 21.0) -> np.ndarray:
    """Session times in days over the window, irregular like real home exercise."""
    rng = np.random.default_rng(7)
    base = np.linspace(0.0, days, n)
    return np.sort(base + rng.uniform(-0.3, 0.3, n).clip(-base[0], None))


# ------------------------------------------------------------------------------ Mann-Kendall ----


def test_mann_kendall_textbook_values() -> None:
    mk = mann_kendall([1, 2, 3, 4, 5])
    assert mk.s == 10
    assert mk.var_s == pytest.approx(5 * 4 * 15 / 18)
    assert mk.z == pytest.approx(9 / np.sqrt(5 * 4 * 15 / 18))  # continuity-corrected
    assert mk.p == pytest.approx(2 * stats.norm.sf(mk.z))
    assert mk.tau == 1.0


def test_mann_kendall_tie_correction() -> None:
    mk = mann_kendall([1, 1, 2, 2, 3])
    # two groups of 2 ties: var = (n(n-1)(2n+5) - 2 * 2*1*9) / 18
    assert mk.var_s == pytest.approx((5 * 4 * 15 - 2 * 18) / 18)
    assert mk.s == 8


@pytest.mark.parametrize("seed", range(20))
def test_mann_kendall_p_matches_scipy_kendalltau(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 30))
    x = np.cumsum(rng.uniform(0.5, 2.0, n))
    y = np.round(rng.normal(0.2 * x * rng.choice([-1, 0, 1]), 3.0), 0)  # rounded: ties in y
    ours = mann_kendall(y, x, continuity=False)
    theirs = stats.kendalltau(x, y, method="asymptotic")
    assert ours.p == pytest.approx(theirs.pvalue, rel=1e-9, abs=1e-12)
    assert np.sign(ours.s) == np.sign(theirs.statistic)
    # The continuity correction only makes the test more conservative.
    assert mann_kendall(y, x).p >= ours.p - 1e-15


def test_mann_kendall_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        mann_kendall([1.0, 2.0])
    with pytest.raises(ValueError):
        mann_kendall([1.0, 2.0, 3.0], [0.0, 2.0, 1.0])  # not in time order
    with pytest.raises(ValueError):
        mann_kendall([1.0, np.nan, 3.0])


# ------------------------------------------------------------------------------ Theil-Sen -------


def test_theil_sen_exact_line_and_outliers() -> None:
    x = np.arange(12.0)
    assert theil_sen(2 * x + 1, x).slope == pytest.approx(2.0)
    y = 2 * x + 1
    y[[3, 8]] = [60.0, -40.0]  # two wild sessions
    robust = theil_sen(y, x)
    assert robust.slope == pytest.approx(2.0, abs=0.1)
    assert robust.low <= robust.slope <= robust.high
    assert abs(np.polyfit(x, y, 1)[0] - 2.0) > 0.5  # least squares is dragged away


def test_theil_sen_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(0, 21, 14))
    y = 80 + 0.4 * x + rng.normal(0, 2, 14)
    ours = theil_sen(y, x, confidence=0.9)
    r = stats.theilslopes(y, x, alpha=0.9)
    assert (ours.slope, ours.low, ours.high) == pytest.approx((r.slope, r.low_slope, r.high_slope))


# ------------------------------------------------------------------------------ classification --


def test_flat_noisy_series_is_stalled_not_improving() -> None:
    x = sessions()
    y = 90 + np.random.default_rng(11).normal(0, 3, x.size)
    trend = classify(y, x)
    assert trend.status is TrendStatus.STALLED
    assert trend.mk is not None and trend.slope is not None


def test_flat_series_rarely_looks_improving() -> None:
    """Under no trend, "improving" needs significance and a real gain: rarer than alpha/2."""
    x = sessions()
    improving = sum(
        classify(90 + np.random.default_rng(seed).normal(0, 3, x.size), x).status is TrendStatus.IMPROVING
        for seed in range(300)
    )
    assert improving / 300 <= 0.04


def test_significant_but_tiny_gain_is_stalled() -> None:
    x = sessions(20)
    y = 90 + (0.3 / WEEK) * x + np.random.default_rng(5).normal(0, 0.05, x.size)  # 0.3 deg/week
    trend = classify(y, x)
    assert trend.mk is not None and trend.mk.p < 0.05
    assert trend.status is TrendStatus.STALLED


def test_clear_regression_and_improvement() -> None:
    x = sessions()
    noise = np.random.default_rng(2).normal(0, 2, x.size)
    down = classify(95 - (4 / WEEK) * x + noise, x)
    assert down.status is TrendStatus.REGRESSING
    assert down.slope is not None and down.slope * WEEK == pytest.approx(-4, abs=1.5)
    up = classify(70 + (5 / WEEK) * x + noise, x)
    assert up.status is TrendStatus.IMPROVING


def test_regression_survives_one_outlier_session() -> None:
    x = sessions()
    y = 95 - (4 / WEEK) * x + np.random.default_rng(4).normal(0, 1.5, x.size)
    y[-1] = 140.0  # a mis-worn sensor on the last day
    assert classify(y, x).status is TrendStatus.REGRESSING


def test_too_little_data_is_insufficient() -> None:
    assert classify([90, 85, 80, 75], [0, 3, 6, 9]).status is TrendStatus.INSUFFICIENT
    short = classify([90, 88, 86, 84, 82, 80], [0, 1, 2, 3, 4, 5])  # 5-day span
    assert short.status is TrendStatus.INSUFFICIENT


# ------------------------------------------------------------------------------ robust deviation


def test_robust_deviation_median_and_mad() -> None:
    dev = robust_deviation(70.0, [90, 92, 88, 91, 89], sigma_floor=0.5)
    assert dev.baseline_median == 90.0
    assert dev.mad_sigma == pytest.approx(1.0 * 1.482602218505602)  # MAD 1 x 1/Phi^-1(3/4)
    assert dev.z == pytest.approx(-20 / dev.mad_sigma)


def test_robust_deviation_ignores_an_outlier_in_the_baseline() -> None:
    clean = robust_deviation(80.0, [90, 91, 89, 90, 90], sigma_floor=0.5)
    dirty = robust_deviation(80.0, [90, 91, 89, 90, 10], sigma_floor=0.5)
    assert dirty.baseline_median == clean.baseline_median
    assert dirty.z < -3


def test_robust_deviation_floor_for_identical_baseline() -> None:
    dev = robust_deviation(89.0, [90, 90, 90, 90], sigma_floor=2.0)
    assert dev.mad_sigma == 0.0
    assert dev.sigma == 2.0
    assert dev.z == pytest.approx(-0.5)
