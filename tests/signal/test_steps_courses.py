"""The placement-free step counter on simulated courses: each case is one that failed before."""

from __future__ import annotations

import numpy as np
import pytest

from motion import ActivityParams, WearParams, count_steps, minute_activity
from simulation import synth_walks
from simulation.synth import SensorModel
from tools.validation.datasets import oxford_reference_steps


def _course(seed: int, placement: str, **plan: object) -> synth_walks.WalkCourse:
    rng = np.random.default_rng(seed)
    return synth_walks.simulate_course(rng, placement, synth_walks.CoursePlan(**plan),  # type: ignore[arg-type]
                                       SensorModel(rate_hz=50.0))


@pytest.mark.parametrize("placement", ["thigh", "lower_back", "hip", "upper_arm", "hand", "bag", "ankle"])
def test_brisk_bouts_with_turns_every_placement(placement: str) -> None:
    c = _course(11, placement, n_bouts=(3, 3), bout_steps=(20, 40), cadence_spm=(95.0, 120.0), p_turn=1.0)
    est = count_steps(c.recording).total
    assert est == pytest.approx(c.step_times.size, rel=0.05)


def test_thigh_repeating_once_per_stride_is_not_halved() -> None:
    # the magnitude repeats once per stride (stride lag correlates better than step lag)
    c = _course(12, "thigh", n_bouts=(2, 2), bout_steps=(40, 40), cadence_spm=(105.0, 115.0), p_turn=0.0)
    res = count_steps(c.recording)
    assert res.total == pytest.approx(c.step_times.size, rel=0.05)
    assert np.nanmedian(res.cadence_spm) == pytest.approx(110.0, rel=0.08)


def test_short_bouts_counted_from_four_steps() -> None:
    c = _course(13, "lower_back", n_bouts=(5, 5), bout_steps=(4, 9), cadence_spm=(90.0, 115.0), p_turn=0.0,
                pauses=("stand",))
    est = count_steps(c.recording).step_times_s
    for b in (b for b in c.blocks if b.kind == "walk"):
        truth = np.count_nonzero((c.step_times >= b.start_s) & (c.step_times < b.end_s))
        got = np.count_nonzero((est >= b.start_s - 0.5) & (est < b.end_s + 0.5))
        assert abs(got - truth) <= 1, (b, truth, got)


def test_slow_irregular_gait_with_turns() -> None:
    c = _course(14, "lower_back", n_bouts=(4, 4), bout_steps=(15, 30), cadence_spm=(40.0, 80.0),
                step_cv=(0.08, 0.12), p_turn=1.0)
    assert count_steps(c.recording).total == pytest.approx(c.step_times.size, rel=0.08)


@pytest.mark.parametrize("kind", ["stand", "sit", "fidget"])
def test_nothing_counted_while_standing_sitting_or_fidgeting(kind: str) -> None:
    rng = np.random.default_rng(15)
    for placement in ("wrist", "thigh", "lower_back"):
        s = synth_walks.simulate_still(rng, 180.0, (kind,), SensorModel(rate_hz=50.0), placement)
        assert count_steps(s.recording).total == 0.0, placement


def test_minute_steps_add_up_to_counted_steps() -> None:
    c = _course(16, "hip", n_bouts=(4, 4), bout_steps=(10, 40), cadence_spm=(80.0, 120.0))
    t0 = 1_767_225_600.0
    rec = type(c.recording)(c.recording.t + t0, c.recording.acc)
    # a few minutes only: let the wear rule decide on little data
    m = minute_activity(rec, "hip", ActivityParams(wear=WearParams(min_coverage=0.01)))
    assert m.worn.all()
    counted = count_steps(rec)
    assert np.nansum(m.steps) == counted.total  # per-minute steps are whole counted steps
    assert np.all(np.mod(m.steps[np.isfinite(m.steps)], 1.0) == 0.0)


def test_oxford_reference_drops_double_triggers() -> None:
    t = np.arange(0.0, 3.0, 0.01)
    right = ((t % 1.0) < 0.3).astype(float)  # contacts at 0, 1, 2 s
    left = (((t - 0.5) % 1.0) < 0.3).astype(float)  # contacts at 0.5, 1.5, 2.5 s
    right[(t > 1.1) & (t < 1.15)] = 0.0  # a pad bounce: re-triggers at 1.15 s
    steps, dropped = oxford_reference_steps(t, right, left, 0.2, 3.0)
    np.testing.assert_allclose(steps, [0.5, 1.0, 1.5, 2.0, 2.5])
    assert dropped == 1


def _magnitude_autocorr(c: synth_walks.WalkCourse, lag_s: float) -> float:
    """Autocorrelation of the 0.5-3 Hz band-passed magnitude inside the walking blocks at ``lag_s``."""
    from scipy import signal

    rec = c.recording
    grid = np.arange(rec.t[0], rec.t[-1], 0.02)
    mag = np.interp(grid, rec.t, np.linalg.norm(rec.acc, axis=1))
    y = signal.sosfiltfilt(signal.butter(4, (0.5, 3.0), btype="bandpass", fs=50.0, output="sos"), mag)
    walk = np.zeros(grid.size, dtype=bool)
    for b in c.blocks:
        if b.kind == "walk":
            walk |= (grid > b.start_s + 2.0) & (grid < b.end_s - 2.0)
    k = round(lag_s * 50.0)
    both = walk[:-k] & walk[k:]
    a, b2 = y[:-k][both], y[k:][both]
    return float(np.sum(a * b2) / np.sqrt(np.sum(a * a) * np.sum(b2 * b2)))


def test_generator_thigh_repeats_per_stride_trunk_per_step() -> None:
    plan = {"n_bouts": (1, 1), "bout_steps": (80, 80), "cadence_spm": (110.0, 110.0), "step_cv": (0.02, 0.02),
            "p_turn": 0.0, "pauses": ("stand",)}
    step = 60.0 / 110.0
    thigh = _course(17, "thigh", **plan)
    back = _course(17, "lower_back", **plan)
    assert thigh.step_times.size == 80 and thigh.steps_in("walk") == 80 and thigh.steps_in("stand") == 0
    # the pocket's magnitude repeats once per stride, weakly (but positively) once per step
    assert _magnitude_autocorr(thigh, 2 * step) > 0.8 > _magnitude_autocorr(thigh, step) > 0.0
    # the lower back repeats every step
    assert _magnitude_autocorr(back, step) > 0.8


def test_slow_pocket_walk_with_strides_longer_than_1_5_s() -> None:
    # 45-60 steps/min on the thigh: the signal repeats every 2-2.7 s, once per stride
    c = _course(18, "thigh", n_bouts=(3, 3), bout_steps=(25, 40), cadence_spm=(45.0, 60.0),
                step_cv=(0.03, 0.06), p_turn=0.0)
    res = count_steps(c.recording)
    assert res.total == pytest.approx(c.step_times.size, rel=0.08)
    assert np.nanmedian(res.cadence_spm) < 65.0
