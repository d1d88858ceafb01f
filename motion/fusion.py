"""Offline 6D orientation (gyroscope + accelerometer) of a complete recording, vectorised.

Method: strapdown integration of the bias-corrected gyroscope by a blocked cumulative
quaternion product, then inclination correction from the accelerometer low-pass filtered in
the almost-inertial (gyro-integrated) frame, as in VQF (Laidig & Seel 2023, Information
Fusion 91:187-204, Sec. 3.2). Because the whole recording is available, the low-pass is a
zero-phase (forward-backward) Butterworth filter, run on ~10 Hz block means (the gravity
estimate has a 0.1 Hz bandwidth), and the gyroscope bias is measured in rest phases
(VQF Sec. 3.4; rest thresholds are VQF's defaults). Heading is unobservable without a
magnetometer and is left to gyroscope integration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import uniform_filter1d

from .filters import Blocks, keep_long_runs, lowpass_zero_phase, runs
from .quat import arc_to_up_soa, cumulative_product_soa, from_rotvec_soa, qmul_soa, qrot_soa
from .recording import ImuRecording, require_contiguous, require_samples

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class FusionParams:
    """Tuning of :func:`estimate_orientation` (defaults: VQF's rest thresholds, 0.1 Hz gravity)."""

    gravity_cutoff_hz: float = 0.1  # zero-phase low-pass of acc in the gyro-integrated frame
    filter_order: int = 2
    block_rate_hz: float = 10.0  # rate of the block means used for rest detection and gravity
    rest_window_s: float = 1.5  # VQF restMinT
    rest_gyr_dps: float = 2.0  # VQF restThGyr: rate fluctuation within the window
    rest_bias_max_dps: float = 5.0  # largest mean rate accepted as bias (MEMS bias spec)
    rest_acc_ms2: float = 0.5  # VQF restThAcc
    max_gap_s: float = 0.25  # longest sample interval that integration may bridge
    estimate_bias: bool = True


DEFAULT_FUSION = FusionParams()


@dataclass(frozen=True)
class OrientationResult:
    """Orientation of the sensor for every sample.

    ``quat`` (N, 4) maps sensor to reference frame (z up, heading arbitrary but continuous);
    ``up`` (N, 3) is the unit vertical (opposite to gravity) in the sensor frame;
    ``gyr_bias`` (3,) is the mean gyroscope bias removed (rad/s); ``rest`` marks rest samples.
    """

    t: FloatArray
    quat: FloatArray
    up: FloatArray
    gyr_bias: FloatArray
    rest: BoolArray


def _rest_blocks(gyr_b: FloatArray, gyr2_b: FloatArray, acc_b: FloatArray, acc2_b: FloatArray,
                 window: int, params: FusionParams) -> NDArray[np.bool_]:
    """Rest flags per block from windowed means/variances of block moments (VQF Sec. 3.4)."""
    def wmean(x: FloatArray) -> FloatArray:
        return np.asarray(uniform_filter1d(x, window, axis=1, mode="nearest"))

    gm = wmean(gyr_b)
    gvar = np.maximum(wmean(gyr2_b) - gm * gm, 0.0).sum(axis=0)
    am = wmean(acc_b)
    avar = np.maximum(wmean(acc2_b) - am * am, 0.0).sum(axis=0)
    th_g = np.deg2rad(params.rest_gyr_dps)
    th_b = np.deg2rad(params.rest_bias_max_dps)
    rest = ((gm * gm).sum(axis=0) < th_b**2) & (gvar < th_g**2) & (avar < params.rest_acc_ms2**2)
    return keep_long_runs(rest, window)


def _bias_blocks(t_b: FloatArray, gyr_b: FloatArray, rest_b: NDArray[np.bool_]) -> FloatArray:
    """Gyro bias per block: mean rate of each rest phase, linearly interpolated between phases."""
    starts, stops = runs(rest_b)
    if starts.size == 0:
        return np.zeros_like(gyr_b)
    c = np.concatenate((np.zeros((3, 1)), np.cumsum(gyr_b, axis=1)), axis=1)
    means = (c[:, stops] - c[:, starts]) / (stops - starts)
    centres = 0.5 * (t_b[starts] + t_b[stops - 1])
    return np.stack([np.interp(t_b, centres, means[i]) for i in range(3)])


def estimate_orientation(rec: ImuRecording, params: FusionParams = DEFAULT_FUSION) -> OrientationResult:
    """Fuse a complete gap-free recording into per-sample orientation (see module docstring)."""
    n = len(rec)
    require_samples(n, 2, "orientation estimation")
    require_contiguous(rec.t, params.max_gap_s, "orientation estimation")
    t = rec.t
    acc = np.ascontiguousarray(rec.acc.T)
    gyr = np.ascontiguousarray(rec.gyr.T)
    blocks = Blocks.make(n, rec.rate_hz, params.block_rate_hz)
    block_rate = rec.rate_hz / blocks.size
    window = max(round(params.rest_window_s * block_rate), 1)

    gyr_b = blocks.mean(gyr)
    acc_b = blocks.mean(acc)
    rest_b = _rest_blocks(gyr_b, blocks.mean(gyr * gyr), acc_b, blocks.mean(acc * acc), window, params)
    if params.estimate_bias and rest_b.any():
        t_b = blocks.mean(t[None, :])[0]
        bias_b = _bias_blocks(t_b, gyr_b, rest_b)
        bias = np.repeat(bias_b, blocks.counts.astype(np.intp), axis=1)[:, :n]
        gyr = gyr - bias
        mean_bias = bias_b.mean(axis=1)
    else:
        mean_bias = np.zeros(3)

    # strapdown: q_k = q_{k-1} * exp(w_k dt_k), each rate the mean over the preceding interval
    dt = np.empty(n)
    dt[0] = 0.0
    dt[1:] = np.diff(t)
    q_gyr = cumulative_product_soa(from_rotvec_soa(gyr * dt))

    # gravity direction in the integration frame: zero-phase low-pass of the rotated acc
    acc_i_b = blocks.mean(qrot_soa(q_gyr, acc))
    grav_b = lowpass_zero_phase(acc_i_b.T, params.gravity_cutoff_hz, block_rate, params.filter_order).T
    grav = blocks.interpolate(np.ascontiguousarray(grav_b), n)
    grav *= 1.0 / np.maximum(np.sqrt(grav[0] * grav[0] + grav[1] * grav[1] + grav[2] * grav[2]), 1e-12)

    quat = qmul_soa(arc_to_up_soa(grav), q_gyr)
    return OrientationResult(t=t, quat=quat.T, up=up_in_sensor_soa(quat).T, gyr_bias=mean_bias,
                             rest=blocks.expand(rest_b, n))


def up_in_sensor_soa(quat: FloatArray) -> FloatArray:
    """Reference-frame +z in the sensor frame, ``R(q)^T e_z`` = third row of R(q), as (3, N)."""
    w, x, y, z = quat[0], quat[1], quat[2], quat[3]
    out = np.empty((3, quat.shape[1]))
    out[0] = 2.0 * (x * z - w * y)
    out[1] = 2.0 * (y * z + w * x)
    out[2] = w * w - x * x - y * y + z * z
    return out
