"""Synthetic body-worn IMU recordings with exactly known repetitions, angles and steps.

A recording is built from a chosen joint-angle trajectory (or one drawn by
:func:`rep_trajectory`) through the single-segment model of each exercise
(:mod:`motion.exercises`): segment orientation and position are evaluated on a fine
time grid, the gyroscope is the body-frame rate of the sensor orientation and the
accelerometer the specific force in the sensor frame (strapdown kinematics, Titterton &
Weston 2004, "Strapdown Inertial Navigation Technology", ch. 3); walking, fidgeting, rest and
posture changes may be interleaved. Sensor errors follow the usual MEMS error model (white
noise, constant bias plus slow drift, IEEE Std 952-1997), mounted at a random rotation, then
sampled at jittered instants with dropped samples.

Every random draw comes from the ``numpy.random.Generator`` passed in, so a seed reproduces a
recording exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from motion.exercises import ML_AXIS, Exercise, ExerciseSpec, Posture, Segment, spec_for
from motion.quat import from_axis_angle, from_rotvec_soa, qmul_soa, qrot_soa, to_rotvec_soa
from motion.recording import GRAVITY, AccRecording, ImuRecording

FloatArray = NDArray[np.float64]

_DOWN = np.array([0.0, 0.0, -1.0])


# ---------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class SensorModel:
    """Sampling and error model of the simulated IMU."""

    rate_hz: float = 100.0
    gyr_noise_dps: float = 0.2  # white noise, standard deviation per sample
    acc_noise_ms2: float = 0.05
    gyr_bias_dps: float = 1.0  # standard deviation of the constant per-axis bias
    gyr_bias_drift_dps: float = 0.1  # amplitude of slow bias drift over the recording
    acc_bias_ms2: float = 0.05
    gyr_scale_error: float = 0.003  # standard deviation of per-axis scale-factor error
    jitter_frac: float = 0.02  # standard deviation of each sample interval, relative
    drop_fraction: float = 0.01  # fraction of samples lost (in runs of 1..max_drop_run)
    max_drop_run: int = 4
    acc_range_g: float = 16.0
    gyr_range_dps: float = 2000.0
    random_mounting: bool = True


@dataclass(frozen=True)
class RepStyle:
    """How a simulated person performs repetitions."""

    tempo_spread: float = 0.15  # per-rep relative variation of the movement duration
    up_fraction: tuple[float, float] = (0.4, 0.6)  # share of the movement spent going up
    rom_spread: float = 0.06  # per-rep relative variation of full-rep amplitude
    p_partial: float = 0.1  # probability that a rep is partial
    partial_fraction: tuple[float, float] = (0.35, 0.65)  # amplitude of a partial rep, relative
    p_pause: float = 0.1  # probability of a pause at the bottom before a rep
    pause_s: tuple[float, float] = (2.0, 6.0)
    p_hold: float = 0.1  # probability of holding at the top
    hold_s: tuple[float, float] = (1.5, 4.0)
    rest_between_s: tuple[float, float] = (0.0, 0.6)
    baseline_jitter_deg: float = 2.0
    lead_in_s: tuple[float, float] = (1.0, 3.0)  # still at the start posture before/after a set
    wobble_deg: float = 3.0  # off-axis wobble of the segment while exercising


@dataclass(frozen=True)
class SessionPlan:
    """Structure of a simulated exercise session."""

    n_sets: tuple[int, int] = (1, 3)
    reps: tuple[int, int] = (5, 15)
    tempo_hz: tuple[float, float] = (0.2, 1.5)
    between_sets: tuple[str, ...] = ("rest", "fidget", "walk")
    between_s: tuple[float, float] = (20.0, 60.0)
    style: RepStyle = field(default_factory=RepStyle)


# ---------------------------------------------------------------------------- truth


@dataclass(frozen=True)
class TruthRep:
    """One simulated repetition: times in s from the recording start, joint ROM in degrees."""

    start_s: float
    peak_s: float
    end_s: float
    rom_deg: float
    partial: bool


@dataclass(frozen=True)
class JointTrajectory:
    """Joint angle (degrees) on a uniform time grid starting at 0, with its repetitions."""

    t: FloatArray
    angle_deg: FloatArray
    reps: tuple[TruthRep, ...]
    pauses: int = 0


@dataclass(frozen=True)
class TruthSet:
    """One simulated exercise set."""

    exercise: Exercise
    start_s: float
    end_s: float
    reps: tuple[TruthRep, ...]
    pauses: int


@dataclass(frozen=True)
class TruthBlock:
    """A stretch of the recording: ``set``, ``walk``, ``fidget``, ``rest`` or ``transition``."""

    kind: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class SyntheticSession:
    """A simulated recording with its ground truth."""

    recording: ImuRecording
    exercise: Exercise
    sets: tuple[TruthSet, ...]
    blocks: tuple[TruthBlock, ...]
    joint_angle_deg: FloatArray  # true joint angle at each sample, NaN outside sets
    gyr_bias: FloatArray  # true mean gyroscope bias, rad/s
    mounting: FloatArray  # quaternion, sensor frame to segment frame

    @property
    def non_exercise_s(self) -> float:
        """Total duration of the non-exercise blocks."""
        return float(sum(b.end_s - b.start_s for b in self.blocks if b.kind != "set"))


# ---------------------------------------------------------------------------- trajectories


def _raised_cosine(u: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (1.0 - np.cos(np.pi * np.clip(u, 0.0, 1.0))))


def _min_jerk(u: FloatArray) -> FloatArray:
    """Minimum-jerk point-to-point profile (Flash & Hogan 1985): zero velocity and acceleration at both ends."""
    v = np.clip(u, 0.0, 1.0)
    return np.asarray(v * v * v * (10.0 + v * (-15.0 + 6.0 * v)))


def rep_trajectory(
    rng: np.random.Generator,
    *,
    n_reps: int,
    rom_deg: float,
    tempo_hz: float,
    style: RepStyle = RepStyle(),
    rate_hz: float = 400.0,
) -> JointTrajectory:
    """A set of ``n_reps`` repetitions of amplitude ``rom_deg`` at ``tempo_hz`` reps/s of motion.

    Each rep rises from the baseline to its peak and returns (minimum-jerk halves); reps may
    be partial, paused at the bottom or held at the top as ``style`` says. The set starts and
    ends at rest at the baseline.
    """
    if n_reps < 0:
        raise ValueError("n_reps must be >= 0")
    knots_t: list[float] = []
    knots_a: list[float] = []
    shapes: list[bool] = []  # True where the segment from the previous knot is a movement
    reps: list[TruthRep] = []
    pauses = 0
    t = float(rng.uniform(*style.lead_in_s))
    base = 0.0
    knots_t.append(0.0)
    knots_a.append(base)
    shapes.append(False)
    for i in range(n_reps):
        if i > 0:
            if rng.random() < style.p_pause:
                t += float(rng.uniform(*style.pause_s))
                pauses += 1
            else:
                t += float(rng.uniform(*style.rest_between_s))
        knots_t.append(t)
        knots_a.append(base)
        shapes.append(False)
        partial = bool(rng.random() < style.p_partial)
        amp = rom_deg * (float(rng.uniform(*style.partial_fraction)) if partial
                         else 1.0 + style.rom_spread * float(rng.standard_normal()))
        dur = (1.0 / tempo_hz) * (1.0 + style.tempo_spread * float(rng.uniform(-1.0, 1.0)))
        up = dur * float(rng.uniform(*style.up_fraction))
        start = t
        t += up
        peak_t = t
        knots_t.append(t)
        knots_a.append(base + amp)
        shapes.append(True)
        if rng.random() < style.p_hold:
            t += float(rng.uniform(*style.hold_s))
            knots_t.append(t)
            knots_a.append(base + amp)
            shapes.append(False)
            pauses += 1
        t += dur - up
        new_base = style.baseline_jitter_deg * float(rng.uniform(-1.0, 1.0))
        knots_t.append(t)
        knots_a.append(new_base)
        shapes.append(True)
        rom = amp + base - min(base, new_base)
        reps.append(TruthRep(start, peak_t, t, rom, partial))
        base = new_base
    t += float(rng.uniform(*style.lead_in_s))
    knots_t.append(t)
    knots_a.append(base)
    shapes.append(False)

    n = int(np.ceil(t * rate_hz)) + 1
    grid = np.arange(n) / rate_hz
    kt = np.asarray(knots_t)
    ka = np.asarray(knots_a)
    seg = np.clip(np.searchsorted(kt, grid, side="right") - 1, 0, kt.size - 2)
    span = np.maximum(kt[seg + 1] - kt[seg], 1e-12)
    u = np.clip((grid - kt[seg]) / span, 0.0, 1.0)
    moving = np.asarray(shapes)[seg + 1]
    frac = np.where(moving, _min_jerk(u), u)
    angle = ka[seg] + frac * (ka[seg + 1] - ka[seg])
    return JointTrajectory(grid, angle, tuple(reps), pauses)


# ---------------------------------------------------------------------------- kinematics


_POSTURE_PITCH_DEG: dict[Posture, dict[Segment, float]] = {
    Posture.STANDING: {Segment.THIGH: 0.0, Segment.SHANK: 0.0, Segment.UPPER_ARM: 0.0,
                       Segment.FOREARM: 15.0},
    Posture.SITTING: {Segment.THIGH: 90.0, Segment.SHANK: 0.0, Segment.UPPER_ARM: 5.0,
                      Segment.FOREARM: 70.0},
    Posture.SUPINE: {Segment.THIGH: 90.0, Segment.SHANK: 90.0, Segment.UPPER_ARM: 90.0,
                     Segment.FOREARM: 90.0},
}

_WALK_SWING_DEG = {Segment.THIGH: 22.0, Segment.SHANK: 32.0, Segment.UPPER_ARM: 18.0,
                   Segment.FOREARM: 24.0}
_IMPACT_MS2 = {Segment.THIGH: 9.0, Segment.SHANK: 20.0, Segment.UPPER_ARM: 3.0,
               Segment.FOREARM: 4.0}
_PIVOT_HEIGHT_M = {Posture.STANDING: 0.9, Posture.SITTING: 0.45, Posture.SUPINE: 0.3}


@dataclass
class _Track:
    """Per-fine-sample pose description of the instrumented segment."""

    theta: FloatArray  # rotation about ``axis`` (rad)
    axis: FloatArray  # (3, n) world rotation axis of theta
    pitch: FloatArray  # posture pitch about the ML axis (rad)
    yaw: FloatArray  # heading of the body (rad)
    wobble: FloatArray  # (3, n) small extra rotation (rotation vector, world frame)
    pivot: FloatArray  # (3, n) position of the pivot (m)
    offset: FloatArray  # sensor = pivot + offset * distal direction (m)
    impact: FloatArray  # (3, n) extra world acceleration (m/s²)
    joint_deg: FloatArray  # true joint angle, NaN outside sets

    @classmethod
    def still(cls, n: int, pitch: float, yaw: float, pivot: FloatArray, offset: float) -> _Track:
        return cls(
            theta=np.zeros(n), axis=np.tile(ML_AXIS[:, None], (1, n)), pitch=np.full(n, pitch),
            yaw=np.full(n, yaw), wobble=np.zeros((3, n)), pivot=np.tile(pivot[:, None], (1, n)),
            offset=np.full(n, offset), impact=np.zeros((3, n)), joint_deg=np.full(n, np.nan),
        )

    @staticmethod
    def concat(tracks: Sequence[_Track]) -> _Track:
        return _Track(*(np.concatenate([getattr(tr, f) for tr in tracks], axis=-1)
                        for f in ("theta", "axis", "pitch", "yaw", "wobble", "pivot", "offset",
                                  "impact", "joint_deg")))


def _smooth_noise(rng: np.random.Generator, n: int, rate_hz: float, cutoff_hz: float,
                  rms: float, dims: int = 1, centred: bool = False) -> FloatArray:
    """Gaussian noise low-passed at ``cutoff_hz`` and scaled to ``rms``; zero-mean only with
    ``centred`` (the gait and walk generators of the step counter keep the uncentred draw their
    suites were built on)."""
    if n == 0 or rms == 0.0:
        return np.zeros((dims, n))
    x = rng.standard_normal((dims, n))
    if n > 30:
        sos = signal.butter(2, min(cutoff_hz, 0.45 * rate_hz), fs=rate_hz, output="sos")
        x = signal.sosfiltfilt(sos, x, axis=1, padlen=min(n - 1, 27))
    if centred:
        # the mean of noise much slower than the recording is not removed by the scaling below
        # and grows with it (a bias drift at 1/300 Hz over a minute became a 15-88 deg/s bias)
        x = x - x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, keepdims=True)
    return np.asarray(x / np.maximum(sd, 1e-12) * rms)


def _pivot_and_offset(spec: ExerciseSpec, theta: FloatArray, base_pitch: float,
                      posture_height: float) -> tuple[FloatArray, FloatArray]:
    """Pivot trajectory and sensor offset along the segment for one exercise set."""
    n = theta.size
    pivot = np.zeros((3, n))
    pivot[2] = posture_height
    offset = np.full(n, spec.lever_m)
    if spec.exercise in (Exercise.SQUAT, Exercise.SIT_TO_STAND):
        # thigh turns about the knee; in a squat the knee also drifts forward
        pitch = base_pitch + (theta if spec.exercise is Exercise.SQUAT else -theta)
        pivot[0] = 0.1 * np.sin(pitch) if spec.exercise is Exercise.SQUAT else 0.0
        pivot[2] = 0.5
        offset = np.full(n, -(0.45 - spec.lever_m))
    elif spec.exercise is Exercise.HEEL_SLIDE:
        # shank turns about the heel, which slides on the bed (equal thigh and shank, 0.42 m)
        beta = np.deg2rad(90.0) - (base_pitch - theta)
        pivot[0] = 2 * 0.42 * np.cos(beta)
        pivot[2] = 0.1
        offset = np.full(n, -(0.42 - spec.lever_m))
    return pivot, offset


def _set_track(rng: np.random.Generator, spec: ExerciseSpec, traj: JointTrajectory,
               fine_rate: float, yaw: float, style: RepStyle) -> _Track:
    grid = np.arange(round(traj.t[-1] * fine_rate) + 1) / fine_rate
    joint = np.interp(grid, traj.t, traj.angle_deg)
    theta = np.deg2rad(joint / spec.joint_gain)
    n = grid.size
    pitch0 = np.deg2rad(spec.start_pitch_deg)
    pivot, offset = _pivot_and_offset(spec, theta, pitch0, _PIVOT_HEIGHT_M[spec.posture])
    wobble = _smooth_noise(rng, n, fine_rate, 0.7, np.deg2rad(style.wobble_deg), 3, centred=True)
    # wobble grows with motion so rest phases stay still
    motion = np.clip(np.abs(np.gradient(theta, 1.0 / fine_rate)) / 0.5, 0.0, 1.0)
    if n > 30:
        motion = signal.sosfiltfilt(signal.butter(2, 1.0, fs=fine_rate, output="sos"), motion)
    wobble *= np.clip(motion, 0.0, 1.0)
    return _Track(theta=theta, axis=np.tile(spec.axis[:, None], (1, n)), pitch=np.full(n, pitch0),
                  yaw=np.full(n, yaw), wobble=wobble, pivot=pivot, offset=offset,
                  impact=np.zeros((3, n)), joint_deg=joint)


def _walk_track(rng: np.random.Generator, segment: Segment, duration_s: float, fine_rate: float,
                yaw: float) -> _Track:
    n = round(duration_s * fine_rate)
    t = np.arange(n) / fine_rate
    cadence = float(rng.uniform(80.0, 125.0))  # steps/min
    f_stride = cadence / 120.0
    env = np.clip(np.minimum(t, duration_s - t) / 1.0, 0.0, 1.0)
    env = _raised_cosine(env)
    amp = np.deg2rad(_WALK_SWING_DEG[segment]) * float(rng.uniform(0.7, 1.2))
    phase = 2 * np.pi * f_stride * t + float(rng.uniform(0, 2 * np.pi))
    theta = env * amp * (np.sin(phase) + 0.15 * np.sin(2 * phase + 0.5))
    pitch0 = np.deg2rad(_POSTURE_PITCH_DEG[Posture.STANDING][segment])
    pivot = np.zeros((3, n))
    pivot[2] = _PIVOT_HEIGHT_M[Posture.STANDING] + 0.025 * env * np.sin(2 * phase)
    # heading: occasional turns
    yaw_t = yaw + np.cumsum(_smooth_noise(rng, n, fine_rate, 0.1, 0.4, centred=True)[0]) / fine_rate
    # heel strikes: ipsilateral strong, contralateral weak, as damped 18 Hz oscillations
    impact = np.zeros((3, n))
    strikes = np.flatnonzero(np.diff(np.floor(phase / np.pi)) > 0) + 1
    if strikes.size:
        pulse = np.zeros(n)
        ipsi = (np.floor(phase[strikes] / np.pi) % 2) == 0
        pulse[strikes] = np.where(ipsi, 1.0, 0.35) * env[strikes]
        pulse[strikes] *= rng.uniform(0.7, 1.3, strikes.size)
        w0 = 2 * np.pi * 18.0 / fine_rate
        r = np.exp(-1.0 / (0.03 * fine_rate))
        resp = signal.lfilter([0.0, np.sin(w0)], [1.0, -2 * r * np.cos(w0), r * r], pulse)
        a = _IMPACT_MS2[segment] * resp
        impact[2] = a
        impact[0] = 0.4 * a
    wobble = _smooth_noise(rng, n, fine_rate, 2.0, np.deg2rad(2.5), 3, centred=True) * env
    return _Track(theta=theta, axis=np.tile(ML_AXIS[:, None], (1, n)), pitch=np.full(n, pitch0),
                  yaw=yaw_t, wobble=wobble, pivot=pivot, offset=np.full(n, 0.2),
                  impact=impact, joint_deg=np.full(n, np.nan))


def _fidget_track(rng: np.random.Generator, posture: Posture, segment: Segment,
                  duration_s: float, fine_rate: float, yaw: float) -> _Track:
    n = round(duration_s * fine_rate)
    pitch = np.deg2rad(_POSTURE_PITCH_DEG[posture][segment])
    tr = _Track.still(n, pitch, yaw, np.array([0.0, 0.0, _PIVOT_HEIGHT_M[posture]]), 0.2)
    # bursts of small random movements separated by stillness
    env = (_smooth_noise(rng, n, fine_rate, 0.15, 1.0, centred=True)[0] > 0.3).astype(np.float64)
    env = np.clip(signal.sosfiltfilt(signal.butter(2, 1.0, fs=fine_rate, output="sos"), env)
                  if n > 30 else env, 0.0, 1.0)
    t = np.arange(n) / fine_rate
    env *= _raised_cosine(np.clip(np.minimum(t, duration_s - t) / 1.0, 0.0, 1.0))
    size = np.deg2rad(float(rng.uniform(3.0, 12.0)))
    tr.wobble = _smooth_noise(rng, n, fine_rate, float(rng.uniform(0.5, 2.0)), size, 3, centred=True) * env
    tr.pivot = tr.pivot + _smooth_noise(rng, n, fine_rate, 1.0, 0.02, 3, centred=True) * env
    return tr


def _transition(a: _Track, b: _Track, duration_s: float, fine_rate: float) -> _Track:
    """Smooth change of posture, heading and position from the end of ``a`` to the start of ``b``."""
    n = max(round(duration_s * fine_rate), 2)
    u = _min_jerk(np.linspace(0.0, 1.0, n))

    def lerp(x0: FloatArray | float, x1: FloatArray | float) -> FloatArray:
        return np.asarray(np.asarray(x0)[..., None] * (1 - u) + np.asarray(x1)[..., None] * u)

    tr = _Track.still(n, 0.0, 0.0, np.zeros(3), 0.0)
    tr.pitch = lerp(a.pitch[-1], b.pitch[0])
    tr.yaw = lerp(a.yaw[-1], b.yaw[0])
    tr.pivot = lerp(a.pivot[:, -1], b.pivot[:, 0])
    tr.offset = lerp(a.offset[-1], b.offset[0])
    tr.theta = lerp(a.theta[-1], b.theta[0])
    tr.axis = np.tile(a.axis[:, -1:], (1, n))
    return tr


def _imu_from_track(rng: np.random.Generator, track: _Track, fine_rate: float,
                    sensor: SensorModel) -> tuple[ImuRecording, FloatArray, FloatArray, FloatArray]:
    """Sample gyroscope and accelerometer of the sensor following ``track``."""
    n = track.theta.size
    q_seg = from_axis_angle(ML_AXIS, track.pitch).T  # posture
    q_seg = qmul_soa(from_rotvec_soa(track.wobble), q_seg)
    q_seg = qmul_soa(from_axis_angle(track.axis.T, track.theta).T, q_seg)
    q_seg = qmul_soa(from_axis_angle(np.array([0.0, 0.0, 1.0]), track.yaw).T, q_seg)
    if sensor.random_mounting:
        m = rng.standard_normal(4)
        mount = m / np.linalg.norm(m)
    else:
        mount = np.array([1.0, 0.0, 0.0, 0.0])
    q_s = qmul_soa(q_seg, mount[:, None])

    dt = 1.0 / fine_rate
    # body-frame rate from central differences of orientation
    rel = qmul_soa(q_s[:, :-2] * np.array([[1.0], [-1.0], [-1.0], [-1.0]]), q_s[:, 2:])
    gyr_f = np.empty((3, n))
    gyr_f[:, 1:-1] = to_rotvec_soa(rel) / (2 * dt)
    gyr_f[:, 0] = gyr_f[:, 1]
    gyr_f[:, -1] = gyr_f[:, -2]
    distal = qrot_soa(q_seg, np.tile(_DOWN[:, None], (1, n)))
    pos = track.pivot + track.offset * distal
    accw = np.gradient(np.gradient(pos, dt, axis=1), dt, axis=1) + track.impact
    accw[2] += GRAVITY
    acc_f = qrot_soa(q_s, accw, inverse=True)

    # sampling instants: jittered intervals, dropped samples
    duration = (n - 1) * dt
    mean_dt = 1.0 / sensor.rate_hz
    k = int(duration / mean_dt * 1.1) + 10
    steps = mean_dt * np.clip(1.0 + sensor.jitter_frac * rng.standard_normal(k), 0.5, 1.5)
    ts = np.concatenate(([0.0], np.cumsum(steps)))
    ts = ts[ts <= duration]
    keep = np.ones(ts.size, dtype=bool)
    if sensor.drop_fraction > 0 and ts.size > 10:
        n_runs = rng.binomial(ts.size, sensor.drop_fraction / (0.5 * (1 + sensor.max_drop_run)))
        starts = rng.integers(1, ts.size - 1, n_runs)
        lens = rng.integers(1, sensor.max_drop_run + 1, n_runs)
        cover = np.zeros(ts.size + sensor.max_drop_run + 1, dtype=np.int64)
        np.add.at(cover, starts, 1)
        np.add.at(cover, starts + lens, -1)
        keep &= np.cumsum(cover)[: ts.size] == 0
    ts = ts[keep]
    grid = np.arange(n) * dt
    gyr = np.stack([np.interp(ts, grid, gyr_f[i]) for i in range(3)], axis=1)
    acc = np.stack([np.interp(ts, grid, acc_f[i]) for i in range(3)], axis=1)
    joint = np.interp(ts, grid, np.nan_to_num(track.joint_deg, nan=-1e9))
    joint[joint < -1e8] = np.nan
    # nearest-neighbour NaN mask so set edges stay NaN-consistent
    nan_mask = np.isnan(track.joint_deg)[np.clip(np.rint(ts * fine_rate).astype(np.intp), 0, n - 1)]
    joint[nan_mask] = np.nan

    # sensor errors
    bias0 = np.deg2rad(sensor.gyr_bias_dps) * rng.standard_normal(3)
    drift = _smooth_noise(rng, ts.size, sensor.rate_hz, 1.0 / 300.0,
                          np.deg2rad(sensor.gyr_bias_drift_dps), 3, centred=True).T
    scale = 1.0 + sensor.gyr_scale_error * rng.standard_normal(3)
    gyr = gyr * scale + bias0 + drift
    gyr += np.deg2rad(sensor.gyr_noise_dps) * rng.standard_normal(gyr.shape)
    acc = acc + sensor.acc_bias_ms2 * rng.standard_normal(3)
    acc += sensor.acc_noise_ms2 * rng.standard_normal(acc.shape)
    acc_rail = sensor.acc_range_g * GRAVITY
    gyr_rail = np.deg2rad(sensor.gyr_range_dps)
    acc = np.clip(acc, -acc_rail, acc_rail)
    gyr = np.clip(gyr, -gyr_rail, gyr_rail)
    rec = ImuRecording(ts, acc, gyr, acc_range=acc_rail, gyr_range=gyr_rail)
    return rec, joint, bias0 + drift.mean(axis=0), mount


# ---------------------------------------------------------------------------- sessions


def _fine_rate(sensor: SensorModel) -> float:
    return max(400.0, 4.0 * sensor.rate_hz)


def _non_exercise_track(rng: np.random.Generator, kind: str, spec: ExerciseSpec,
                        duration_s: float, fine_rate: float, yaw: float) -> _Track:
    if kind == "walk":
        return _walk_track(rng, spec.segment, duration_s, fine_rate, yaw)
    posture = spec.posture if rng.random() < 0.5 else Posture.SITTING
    if kind == "fidget":
        return _fidget_track(rng, posture, spec.segment, duration_s, fine_rate, yaw)
    if kind == "rest":
        n = round(duration_s * fine_rate)
        pitch = np.deg2rad(_POSTURE_PITCH_DEG[posture][spec.segment])
        return _Track.still(n, pitch, yaw, np.array([0.0, 0.0, _PIVOT_HEIGHT_M[posture]]), 0.2)
    raise ValueError(f"unknown non-exercise kind {kind!r}")


def _assemble(rng: np.random.Generator, pieces: list[tuple[str, _Track]], fine_rate: float,
              sensor: SensorModel, exercise: Exercise,
              set_reps: list[tuple[JointTrajectory, float]]) -> SyntheticSession:
    tracks: list[_Track] = []
    blocks: list[TruthBlock] = []
    sets: list[TruthSet] = []
    t0 = 0.0
    set_i = 0
    for i, (kind, tr) in enumerate(pieces):
        if i > 0:
            prev = tracks[-1]
            need = (abs(prev.pitch[-1] - tr.pitch[0]) > 1e-6 or abs(prev.yaw[-1] - tr.yaw[0]) > 1e-6
                    or np.any(np.abs(prev.pivot[:, -1] - tr.pivot[:, 0]) > 1e-6)
                    or abs(prev.offset[-1] - tr.offset[0]) > 1e-6)
            if need:
                dur = float(rng.uniform(1.5, 3.0))
                trans = _transition(prev, tr, dur, fine_rate)
                tracks.append(trans)
                n_tr = trans.theta.size
                blocks.append(TruthBlock("transition", t0, t0 + n_tr / fine_rate))
                t0 += n_tr / fine_rate
        n = tr.theta.size
        blocks.append(TruthBlock(kind, t0, t0 + n / fine_rate))
        if kind == "set":
            traj, _ = set_reps[set_i]
            set_i += 1
            reps = tuple(TruthRep(r.start_s + t0, r.peak_s + t0, r.end_s + t0, r.rom_deg, r.partial)
                         for r in traj.reps)
            sets.append(TruthSet(exercise, t0, t0 + n / fine_rate, reps, traj.pauses))
        tracks.append(tr)
        t0 += n / fine_rate
    track = _Track.concat(tracks)
    rec, joint, bias, mount = _imu_from_track(rng, track, fine_rate, sensor)
    return SyntheticSession(rec, exercise, tuple(sets), tuple(blocks), joint, bias, mount)


def simulate_session(
    rng: np.random.Generator,
    exercise: Exercise | str,
    plan: SessionPlan = SessionPlan(),
    sensor: SensorModel = SensorModel(),
    trajectories: Sequence[JointTrajectory] | None = None,
) -> SyntheticSession:
    """A home-exercise session: sets of ``exercise`` separated by non-exercise motion.

    Pass ``trajectories`` to drive the sets with chosen joint-angle trajectories (degrees of
    the exercise's joint, starting and ending at rest); otherwise each set is drawn with
    :func:`rep_trajectory` from ``plan``.
    """
    spec = spec_for(exercise)
    fine = _fine_rate(sensor)
    if trajectories is None:
        n_sets = int(rng.integers(plan.n_sets[0], plan.n_sets[1] + 1))
        trajs = []
        for _ in range(n_sets):
            trajs.append(rep_trajectory(
                rng, n_reps=int(rng.integers(plan.reps[0], plan.reps[1] + 1)),
                rom_deg=float(rng.uniform(*spec.rom_range_deg)),
                tempo_hz=float(rng.uniform(*plan.tempo_hz)), style=plan.style, rate_hz=fine))
    else:
        trajs = list(trajectories)
    pieces: list[tuple[str, _Track]] = []
    set_reps: list[tuple[JointTrajectory, float]] = []
    yaw = float(rng.uniform(-np.pi, np.pi))
    pieces.append(("rest", _non_exercise_track(rng, "rest", spec, float(rng.uniform(5.0, 15.0)),
                                               fine, yaw)))
    for i, traj in enumerate(trajs):
        if i > 0 and plan.between_sets:
            kind = str(rng.choice(list(plan.between_sets)))
            yaw = float(rng.uniform(-np.pi, np.pi))
            pieces.append((kind, _non_exercise_track(rng, kind, spec,
                                                     float(rng.uniform(*plan.between_s)), fine, yaw)))
        yaw = float(rng.uniform(-np.pi, np.pi))
        pieces.append(("set", _set_track(rng, spec, traj, fine, yaw, plan.style)))
        set_reps.append((traj, yaw))
    pieces.append(("rest", _non_exercise_track(rng, "rest", spec, float(rng.uniform(5.0, 15.0)),
                                               fine, yaw)))
    return _assemble(rng, pieces, fine, sensor, spec.exercise, set_reps)


def simulate_daily_motion(
    rng: np.random.Generator,
    exercise: Exercise | str,
    duration_s: float,
    sensor: SensorModel = SensorModel(),
    kinds: tuple[str, ...] = ("walk", "fidget", "rest"),
    block_s: tuple[float, float] = (20.0, 90.0),
) -> SyntheticSession:
    """Non-exercise motion only (no sets) on the exercise's segment, for false-rep checks."""
    spec = spec_for(exercise)
    fine = _fine_rate(sensor)
    pieces: list[tuple[str, _Track]] = []
    total = 0.0
    while total < duration_s:
        kind = str(rng.choice(list(kinds)))
        dur = min(float(rng.uniform(*block_s)), duration_s - total + 1.0)
        pieces.append((kind, _non_exercise_track(rng, kind, spec, dur, fine,
                                                 float(rng.uniform(-np.pi, np.pi)))))
        total += dur
    return _assemble(rng, pieces, fine, sensor, spec.exercise, [])


# ---------------------------------------------------------------------------- gait


class Placement:
    """Where an accelerometer is worn for step counting."""

    WRIST = "wrist"
    HIP = "hip"
    FOOT = "foot"


@dataclass(frozen=True)
class SyntheticGait:
    """Simulated walking: accelerometer recording and the true step instants (s)."""

    recording: AccRecording
    step_times: FloatArray
    cadence_spm: float
    placement: str


def simulate_gait(
    rng: np.random.Generator,
    cadence_spm: float,
    duration_s: float,
    placement: str = Placement.HIP,
    sensor: SensorModel = SensorModel(),
    cadence_drift: float = 0.05,
    rest_s: float = 0.0,
) -> SyntheticGait:
    """Steady walking at ``cadence_spm`` steps/min (slowly varying by ``cadence_drift``).

    Hip: vertical centre-of-mass oscillation at the step frequency plus heel-strike transients;
    wrist: arm swing at the stride frequency (half the step rate) with weak transients; foot:
    swing of the instrumented foot once per stride plus strong transients of its own strikes
    and weak ones of the other foot's. Model after Zijlstra & Hof 2003 (Gait Posture 18(2)).
    ``rest_s`` seconds of standing still precede and follow the walk.
    """
    fine = _fine_rate(sensor)
    n_rest = round(rest_s * fine)
    n_walk = round(duration_s * fine)
    n = n_walk + 2 * n_rest
    t = np.arange(n) / fine
    walk = np.zeros(n)
    walk[n_rest:n_rest + n_walk] = 1.0
    f_step = cadence_spm / 60.0 * (1.0 + cadence_drift * _smooth_noise(rng, n, fine, 0.05, 1.0)[0])
    phase = 2 * np.pi * np.cumsum(f_step * walk) / fine + float(rng.uniform(0, 2 * np.pi))
    strikes = np.flatnonzero(np.diff(np.floor(phase / (2 * np.pi))) > 0) + 1
    step_times = t[strikes]
    gate = walk
    own = (np.arange(strikes.size) % 2) == 0
    speed = 0.3 + 0.8 * cadence_spm / 100.0
    acc_w = np.zeros((3, n))
    if placement == Placement.HIP:
        a_v, a_imp, other = 0.25 * GRAVITY * speed**2, 6.0, 1.0
        acc_w[2] = a_v * np.cos(phase)
        acc_w[0] = 0.5 * a_v * np.sin(phase + 0.4)
        acc_w[1] = 0.3 * a_v * np.sin(0.5 * phase)
    elif placement == Placement.WRIST:
        a_v, a_imp, other = 0.15 * GRAVITY * speed, 2.5, 1.0
        swing = np.deg2rad(25.0) * speed * np.sin(0.5 * phase)
        acc_w[0] = 4.0 * np.gradient(np.gradient(0.6 * np.sin(swing), 1 / fine), 1 / fine)
        acc_w[2] = 0.5 * a_v * np.cos(phase)
    elif placement == Placement.FOOT:
        a_v, a_imp, other = 0.0, 25.0, 0.2
        swing_phase = np.mod(0.5 * phase, 2 * np.pi)
        in_swing = swing_phase < 0.8 * np.pi
        acc_w[0] = np.where(in_swing, 3.0 * GRAVITY * np.sin(swing_phase / 0.4), 0.0)
        acc_w[2] = np.where(in_swing, 1.0 * GRAVITY * np.sin(swing_phase / 0.8), 0.0)
    else:
        raise ValueError(f"unknown placement {placement!r}")
    acc_w *= gate
    pulse = np.zeros(n)
    pulse[strikes] = np.where(own, 1.0, other) * rng.uniform(0.7, 1.3, strikes.size)
    w0 = 2 * np.pi * 16.0 / fine
    r = np.exp(-1.0 / (0.035 * fine))
    resp = signal.lfilter([0.0, np.sin(w0)], [1.0, -2 * r * np.cos(w0), r * r], pulse)
    acc_w[2] += a_imp * resp
    acc_w[0] += 0.5 * a_imp * resp
    acc_w[2] += GRAVITY
    # random but fixed wearing orientation, small sway
    m = rng.standard_normal(4)
    mount = m / np.linalg.norm(m)
    sway = from_rotvec_soa(_smooth_noise(rng, n, fine, 1.0, np.deg2rad(4.0), 3) * gate)
    q = qmul_soa(sway, mount[:, None])
    acc_s = qrot_soa(q, acc_w, inverse=True)
    mean_dt = 1.0 / sensor.rate_hz
    k = int(t[-1] / mean_dt * 1.1) + 10
    ts = np.concatenate(([0.0], np.cumsum(mean_dt * np.clip(
        1.0 + sensor.jitter_frac * rng.standard_normal(k), 0.5, 1.5))))
    ts = ts[ts <= t[-1]]
    acc = np.stack([np.interp(ts, t, acc_s[i]) for i in range(3)], axis=1)
    acc += sensor.acc_noise_ms2 * rng.standard_normal(acc.shape)
    rail = sensor.acc_range_g * GRAVITY
    acc = np.clip(acc, -rail, rail)
    return SyntheticGait(AccRecording(ts, acc, acc_range=rail), step_times, cadence_spm, placement)
