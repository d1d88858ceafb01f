"""Fixtures of the signal-processing tests: small deterministic synthetic recordings."""

from __future__ import annotations

import numpy as np
import pytest

from motion.recording import GRAVITY, ImuRecording


@pytest.fixture
def still_recording() -> ImuRecording:
    """10 s at 100 Hz of a sensor lying still, tilted 30 deg about x, with a small gyro bias."""
    rng = np.random.default_rng(1)
    n = 1000
    t = np.arange(n) / 100.0
    tilt = np.deg2rad(30.0)
    up = np.array([0.0, np.sin(tilt), np.cos(tilt)])
    acc = GRAVITY * up + 0.02 * rng.standard_normal((n, 3))
    gyr = np.deg2rad([0.5, -0.3, 0.2]) + np.deg2rad(0.05) * rng.standard_normal((n, 3))
    return ImuRecording(t, acc, gyr)
