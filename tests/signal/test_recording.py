"""Edge cases of the input: each is rejected with a typed error naming the problem, or handled."""

from __future__ import annotations

import numpy as np
import pytest

from motion import (
    EmptyInputError,
    GapError,
    ImuRecording,
    NonFiniteSampleError,
    NonMonotonicTimestampError,
    SampleRateError,
    SaturatedSignalError,
    ShapeError,
    TooFewSamplesError,
    analyze_exercise,
    estimate_orientation,
)
from motion.recording import GRAVITY, contiguous_segments


def _arrays(n: int = 500, rate: float = 100.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.arange(n) / rate
    acc = np.tile([0.0, 0.0, GRAVITY], (n, 1))
    gyr = np.zeros((n, 3))
    return t, acc, gyr


def test_empty_input_rejected() -> None:
    with pytest.raises(EmptyInputError, match="no samples"):
        ImuRecording(np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)))


def test_single_sample_is_a_recording_but_too_short_to_fuse() -> None:
    rec = ImuRecording(np.array([0.0]), np.array([[0.0, 0.0, GRAVITY]]), np.zeros((1, 3)))
    assert len(rec) == 1
    with pytest.raises(TooFewSamplesError, match="at least 2"):
        estimate_orientation(rec)
    # the analysis entry point reports it as skipped, with no sets
    res = analyze_exercise(rec, "squat")
    assert res.sets == () and res.skipped == ((0.0, 0.0),)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_rejected(bad: float) -> None:
    t, acc, gyr = _arrays()
    gyr[123, 1] = bad
    with pytest.raises(NonFiniteSampleError, match=r"gyr: 1 sample.*index 123"):
        ImuRecording(t, acc, gyr)
    t, acc, gyr = _arrays()
    t[7] = bad
    with pytest.raises(NonFiniteSampleError, match="index 7"):
        ImuRecording(t, acc, gyr)


def test_non_monotonic_timestamp_rejected() -> None:
    t, acc, gyr = _arrays()
    t[200] = t[198]
    with pytest.raises(NonMonotonicTimestampError, match=r"t\[200\]"):
        ImuRecording(t, acc, gyr)


def test_duplicate_timestamp_rejected() -> None:
    t, acc, gyr = _arrays()
    t[10] = t[9]
    with pytest.raises(NonMonotonicTimestampError):
        ImuRecording(t, acc, gyr)


def test_shape_errors() -> None:
    t, acc, gyr = _arrays()
    with pytest.raises(ShapeError, match=r"\(N, 3\)"):
        ImuRecording(t, acc[:, :2], gyr)
    with pytest.raises(ShapeError, match="499 samples"):
        ImuRecording(t, acc[:-1], gyr)


def test_sample_rate_out_of_range() -> None:
    t, acc, gyr = _arrays(rate=2.0)
    with pytest.raises(SampleRateError, match="2 Hz"):
        ImuRecording(t, acc, gyr)


def test_gap_rejected_by_fusion_and_split_by_analysis() -> None:
    t, acc, gyr = _arrays(n=2000)
    t[1000:] += 30.0  # 30 s of missing data in the middle
    rec = ImuRecording(t, acc, gyr)
    with pytest.raises(GapError, match="1 gap"):
        estimate_orientation(rec)
    assert contiguous_segments(rec.t, 0.25) == [(0, 1000), (1000, 2000)]
    res = analyze_exercise(rec, "knee_extension")
    assert len(res.gaps) == 1
    assert res.gaps[0][1] - res.gaps[0][0] == pytest.approx(30.01)
    assert res.analysed_s == pytest.approx(2 * 9.99)


def test_clipped_gyroscope_rejected_with_known_range() -> None:
    t, acc, gyr = _arrays()
    rail = np.deg2rad(2000.0)
    gyr[100:110, 2] = rail
    with pytest.raises(SaturatedSignalError, match="gyr: 10 of 500"):
        ImuRecording(t, acc, gyr, gyr_range=rail)


def test_clipped_gyroscope_detected_without_range() -> None:
    t, acc, gyr = _arrays()
    gyr[:, 0] = np.deg2rad(300.0) * np.sin(np.linspace(0, 20, t.size))
    gyr[:, 0] = np.clip(gyr[:, 0], -np.deg2rad(250.0), np.deg2rad(250.0))  # flat tops at the rail
    with pytest.raises(SaturatedSignalError, match="gyr"):
        ImuRecording(t, acc, gyr)


def test_brief_accelerometer_clipping_tolerated_and_counted() -> None:
    t, acc, gyr = _arrays()
    rail = 16 * GRAVITY
    acc[50:53, 2] = rail  # a heel strike at the rail: 0.6 % of samples
    rec = ImuRecording(t, acc, gyr, acc_range=rail)
    assert rec.acc_saturated == 3
    acc[50:100, 2] = rail  # 10 %: too much
    with pytest.raises(SaturatedSignalError, match="acc"):
        ImuRecording(t, acc, gyr, acc_range=rail)


def test_non_finite_samples_can_be_dropped_explicitly_and_become_a_gap() -> None:
    from motion.recording import drop_nonfinite

    t, acc, gyr = _arrays(n=3000)
    gyr[1000:1100] = np.nan  # 1 s of corrupted samples
    (t2, acc2, gyr2), dropped = drop_nonfinite(t, acc, gyr)
    assert dropped == 100 and t2.size == 2900
    res = analyze_exercise(ImuRecording(t2, acc2, gyr2), "squat")
    assert len(res.gaps) == 1 and res.gaps[0] == pytest.approx((9.99, 11.0))
