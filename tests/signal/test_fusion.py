from __future__ import annotations

import numpy as np

from motion import ImuRecording, estimate_orientation
from motion.quat import from_axis_angle, qmul
from motion.recording import GRAVITY
from simulation import synth


def test_static_tilt_and_rest_bias(still_recording: ImuRecording) -> None:
    ori = estimate_orientation(still_recording)
    tilt = np.deg2rad(30.0)
    np.testing.assert_allclose(ori.up.mean(axis=0), [0.0, np.sin(tilt), np.cos(tilt)], atol=2e-3)
    assert ori.rest.all()
    np.testing.assert_allclose(ori.gyr_bias, np.deg2rad([0.5, -0.3, 0.2]), atol=np.deg2rad(0.02))
    # the reference frame's z is up: rotating the measured specific force gives +z
    np.testing.assert_allclose(np.linalg.norm(ori.quat, axis=1), 1.0, atol=1e-9)


def test_rotation_about_horizontal_axis_tracks_inclination() -> None:
    """Sensor turning +-60 deg about its x axis (horizontal) at 0.5 Hz, with gyro bias."""
    rate = 100.0
    t = np.arange(6000) / rate
    angle = np.deg2rad(60.0) * np.sin(2 * np.pi * 0.5 * t) * (t > 5.0) * (t < 55.0)
    rate_x = np.gradient(angle, t)
    gyr = np.column_stack([rate_x, np.zeros_like(t), np.zeros_like(t)]) + np.deg2rad([0.8, -0.5, 0.3])
    q = from_axis_angle(np.array([1.0, 0.0, 0.0]), angle)
    up_true = np.column_stack([np.zeros_like(t), np.sin(angle), np.cos(angle)])
    acc = GRAVITY * up_true
    ori = estimate_orientation(ImuRecording(t, acc, gyr))
    err = np.rad2deg(np.arccos(np.clip(np.sum(ori.up * up_true, axis=1), -1.0, 1.0)))
    assert err.max() < 1.0
    # heading is arbitrary but the inclination of the full quaternion matches too
    z_est = qmul(qmul(ori.quat, np.array([0.0, 0.0, 0.0, 1.0])), ori.quat * [1, -1, -1, -1])[:, 1:]
    z_true = qmul(qmul(q, np.array([0.0, 0.0, 0.0, 1.0])), q * [1, -1, -1, -1])[:, 1:]
    tilt_est = np.rad2deg(np.arccos(np.clip(z_est[:, 2], -1, 1)))
    tilt_true = np.rad2deg(np.arccos(np.clip(z_true[:, 2], -1, 1)))
    assert np.abs(tilt_est - tilt_true).max() < 1.0


def test_fusion_on_generated_session_matches_truth() -> None:
    rng = np.random.default_rng(5)
    ses = synth.simulate_session(rng, "shoulder_abduction", synth.SessionPlan(n_sets=(1, 1)))
    ori = estimate_orientation(ses.recording)
    # gravity magnitude is preserved and the estimate is a unit vector everywhere
    np.testing.assert_allclose(np.linalg.norm(ori.up, axis=1), 1.0, atol=1e-9)
    assert ori.rest.any()
    np.testing.assert_allclose(ori.gyr_bias, ses.gyr_bias, atol=np.deg2rad(0.3))
