from __future__ import annotations

import numpy as np
import pytest

from motion import Exercise
from simulation import synth


def test_same_seed_same_recording() -> None:
    a = synth.simulate_session(np.random.default_rng(42), Exercise.SQUAT)
    b = synth.simulate_session(np.random.default_rng(42), Exercise.SQUAT)
    np.testing.assert_array_equal(a.recording.acc, b.recording.acc)
    np.testing.assert_array_equal(a.recording.t, b.recording.t)
    assert a.sets == b.sets
    c = synth.simulate_session(np.random.default_rng(43), Exercise.SQUAT)
    assert c.recording.t.size != a.recording.t.size or not np.array_equal(c.recording.acc, a.recording.acc)


def test_rep_trajectory_truth() -> None:
    rng = np.random.default_rng(0)
    style = synth.RepStyle(p_partial=0.0, p_pause=0.0, p_hold=0.0, baseline_jitter_deg=0.0, rom_spread=0.0)
    traj = synth.rep_trajectory(rng, n_reps=8, rom_deg=70.0, tempo_hz=0.5, style=style)
    assert len(traj.reps) == 8
    assert all(r.rom_deg == pytest.approx(70.0) for r in traj.reps)
    assert traj.angle_deg.max() == pytest.approx(70.0, abs=1e-6)
    assert traj.angle_deg[0] == 0.0 and traj.angle_deg[-1] == 0.0
    durations = [r.end_s - r.start_s for r in traj.reps]
    assert min(durations) >= 2.0 * 0.85 - 1e-9 and max(durations) <= 2.0 * 1.15 + 1e-9


def test_chosen_trajectory_drives_the_set() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(0.0, 20.0, 0.0025)
    angle = 45.0 * (1 - np.cos(2 * np.pi * 0.25 * np.clip(t - 2.0, 0.0, 16.0))) / 2
    reps = tuple(synth.TruthRep(2.0 + 4 * k, 4.0 + 4 * k, 6.0 + 4 * k, 45.0, False) for k in range(4))
    traj = synth.JointTrajectory(t, angle, reps)
    ses = synth.simulate_session(rng, "knee_extension", trajectories=[traj],
                                 sensor=synth.SensorModel(jitter_frac=0.0, drop_fraction=0.0))
    assert len(ses.sets) == 1 and len(ses.sets[0].reps) == 4
    inside = ~np.isnan(ses.joint_angle_deg)
    assert np.nanmax(ses.joint_angle_deg) == pytest.approx(45.0, abs=0.1)
    assert inside.sum() == pytest.approx(20.0 * 100, rel=0.02)


def test_sensor_imperfections_present() -> None:
    rng = np.random.default_rng(2)
    ses = synth.simulate_session(rng, "elbow_flexion", sensor=synth.SensorModel(rate_hz=50.0, drop_fraction=0.02))
    dt = np.diff(ses.recording.t)
    assert dt.min() < 0.02 * 0.99 < 0.02 * 1.01 < np.median(dt) * 1.02  # jitter around 20 ms
    assert dt.max() >= 2 * 0.02 * 0.9  # dropped samples
    assert np.linalg.norm(ses.gyr_bias) > 0
    assert ses.non_exercise_s > 0


def test_gait_truth() -> None:
    rng = np.random.default_rng(3)
    g = synth.simulate_gait(rng, 100.0, 60.0, "hip", rest_s=5.0)
    assert g.step_times.size == pytest.approx(100, abs=6)
    assert g.step_times.min() >= 5.0 and g.step_times.max() <= 65.0
