"""Steps, wear and the per-minute activity entry point (zero is not missing)."""

from __future__ import annotations

import numpy as np
import pytest

from motion import (
    AccRecording,
    NonFiniteSampleError,
    ShapeError,
    SignalInputError,
    count_steps,
    detect_wear,
    device_steps,
    minute_activity,
)
from motion.recording import GRAVITY
from simulation import synth


@pytest.mark.parametrize(("placement", "cadence", "rate"), [
    ("hip", 62.0, 25.0), ("hip", 128.0, 100.0), ("wrist", 75.0, 50.0), ("wrist", 120.0, 100.0),
    ("foot", 65.0, 100.0), ("foot", 125.0, 50.0),
])
def test_step_count_on_synthetic_gait(placement: str, cadence: float, rate: float) -> None:
    rng = np.random.default_rng(int(cadence))
    gait = synth.simulate_gait(rng, cadence, 90.0, placement, synth.SensorModel(rate_hz=rate), rest_s=10.0)
    res = count_steps(gait.recording)
    assert res.total == pytest.approx(gait.step_times.size, rel=0.05)
    walking = np.isfinite(res.cadence_spm)
    assert np.nanmedian(res.cadence_spm[walking]) == pytest.approx(cadence, rel=0.05)
    # slots tile the time axis on multiples of 4 s
    assert np.allclose(np.mod(res.slot_start_s, 4.0), 0.0)


def test_no_steps_when_still() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(0, 120, 0.02)
    acc = np.tile([0.0, 0.0, GRAVITY], (t.size, 1)) + 0.03 * rng.standard_normal((t.size, 3))
    assert count_steps(AccRecording(t, acc)).total == 0.0


def test_counter_takes_no_placement() -> None:
    t = np.arange(0, 10, 0.02)
    with pytest.raises(SignalInputError, match="placement"):
        count_steps(AccRecording(t, np.tile([0.0, 0.0, GRAVITY], (t.size, 1))), "ankle")  # type: ignore[arg-type]


def test_device_steps_pass_through_and_validation() -> None:
    d = device_steps([3600.0, 0.0], [7200.0, 3600.0], [250, 100], "vendor-x")
    np.testing.assert_array_equal(d.start_s, [0.0, 3600.0])  # sorted, intervals kept as given
    np.testing.assert_array_equal(d.steps, [100.0, 250.0])
    assert d.total == 350.0 and d.source == "vendor-x"
    with pytest.raises(SignalInputError, match="negative"):
        device_steps([0.0], [60.0], [-1], "v")
    with pytest.raises(SignalInputError, match="end <= start"):
        device_steps([60.0], [60.0], [1], "v")
    with pytest.raises(SignalInputError, match="overlap"):
        device_steps([0.0, 30.0], [60.0, 90.0], [1, 1], "v")
    with pytest.raises(NonFiniteSampleError):
        device_steps([0.0], [60.0], [np.nan], "v")
    with pytest.raises(ShapeError):
        device_steps([0.0, 1.0], [60.0], [1], "v")


def _day_of_wear(rate: float = 10.0) -> AccRecording:
    """3 h: 1 h worn while sitting (small movements), 1 h on a table, 1 h walking at 100 steps/min."""
    rng = np.random.default_rng(7)
    t0 = 1_767_225_600.0  # 2026-01-01T00:00Z, a whole hour
    n = int(3600 * rate)
    sit = np.tile([0.0, 0.3 * GRAVITY, 0.95 * GRAVITY], (n, 1)) + 0.3 * rng.standard_normal((n, 3))
    table = np.tile([0.0, 0.0, GRAVITY], (n, 1)) + 0.01 * rng.standard_normal((n, 3))
    gait = synth.simulate_gait(rng, 100.0, 3600.0, "wrist", synth.SensorModel(rate_hz=rate, jitter_frac=0.0))
    walk = gait.recording.acc[:n]
    acc = np.concatenate((sit, table, walk))
    t = t0 + np.arange(acc.shape[0]) / rate
    return AccRecording(t, acc)


def test_wear_detection_van_hees() -> None:
    rec = _day_of_wear()
    w = detect_wear(rec)
    assert w.block_s == 900.0 and w.block_start_s.size == 12
    # the table hour is non-wear (allow the 60-min window to blur one block at each edge)
    assert not w.worn[5:7].any()
    assert w.worn[:3].all() and w.worn[9:].all()
    assert w.covered.all()


def test_minute_activity_zero_is_not_missing() -> None:
    rec = _day_of_wear()
    m = minute_activity(rec, "wrist")
    assert m.minute_start_s.size == 180
    sitting, table, walking = slice(0, 45), slice(75, 105), slice(135, 180)
    assert m.worn[sitting].all() and np.all(m.steps[sitting] == 0.0)  # worn, no steps: zero
    assert not m.worn[table].any() and np.isnan(m.steps[table]).all()  # unworn: missing
    assert not m.active[table].any()
    assert m.worn[walking].all()
    assert np.median(m.steps[walking]) == pytest.approx(100.0, rel=0.05)
    assert m.active[walking].all() and not m.active[sitting].any()
    assert m.wear_minutes == int(m.worn.sum()) and m.active_minutes >= 45
