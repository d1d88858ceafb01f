"""Hard cases for repetition counting, built on :mod:`synth` (same kinematics and sensor model).

Each case reproduces one way real recordings broke the earlier counter: sets cut close with
no rest at either end, holds at the top or the bottom, blocks of fast and of low-amplitude
reps, slow tempo with a fast secondary wobble and gyroscope bias walk, rotations about a
vertical axis, exercises without a kinematic model (pendulum circles, rows, trunk bends, hip
abduction), and walking, fidgeting and putting the device on or taking it off around a set.
Every random draw comes from the generator passed in, so a seed reproduces a recording.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from motion.exercises import AP_AXIS, ML_AXIS, Exercise, ExerciseSpec, Posture, Segment, spec_for
from motion.recording import ImuRecording

from . import synth

FloatArray = NDArray[np.float64]

VERTICAL = np.array([0.0, 0.0, 1.0])

# Exercises without a kinematic model here: (segment, posture, world axis, start pitch, ROM range).
UNMODELLED: dict[str, ExerciseSpec] = {
    "pendulum": ExerciseSpec(Exercise.OTHER, Segment.UPPER_ARM, Posture.STANDING, ML_AXIS, 60.0,
                             (20.0, 45.0), lever_m=0.5),
    "external_rotation": ExerciseSpec(Exercise.OTHER, Segment.FOREARM, Posture.STANDING, VERTICAL, 90.0,
                                      (40.0, 80.0), lever_m=0.2),
    "row": ExerciseSpec(Exercise.OTHER, Segment.FOREARM, Posture.STANDING, ML_AXIS, 45.0, (40.0, 80.0),
                        lever_m=0.25),
    "trunk_bend": ExerciseSpec(Exercise.OTHER, Segment.THIGH, Posture.STANDING, -AP_AXIS, 0.0,
                               (20.0, 40.0), lever_m=0.4),
    "hip_abduction": ExerciseSpec(Exercise.OTHER, Segment.THIGH, Posture.STANDING, AP_AXIS, 0.0,
                                  (20.0, 40.0), lever_m=0.3),
}

CASES = ("cut_close", "holds", "blocks", "slow_wobble", "vertical_axis", "unknown", "surrounded")

CLEAN = synth.RepStyle(p_partial=0.0, p_pause=0.0, p_hold=0.0)
DEFAULT_SENSOR = synth.SensorModel()


def _concat(trajs: list[synth.JointTrajectory], rate_hz: float) -> synth.JointTrajectory:
    """Trajectories one after the other on one grid (each starts where the last ended)."""
    t_parts: list[FloatArray] = []
    a_parts: list[FloatArray] = []
    reps: list[synth.TruthRep] = []
    offset = 0.0
    for tr in trajs:
        t_parts.append(tr.t[:-1] + offset)
        a_parts.append(tr.angle_deg[:-1])
        reps.extend(replace(r, start_s=r.start_s + offset, peak_s=r.peak_s + offset, end_s=r.end_s + offset)
                    for r in tr.reps)
        offset += float(tr.t[-1])
    n = round(offset * rate_hz) + 1
    grid = np.arange(n) / rate_hz
    angle = np.interp(grid, np.concatenate(t_parts), np.concatenate(a_parts))
    return synth.JointTrajectory(grid, angle, tuple(reps))


def _cut(traj: synth.JointTrajectory, rng: np.random.Generator, rate_hz: float) -> synth.JointTrajectory:
    """Cut a trajectory close: start within the first rep's rise, end within the last rep's fall."""
    first, last = traj.reps[0], traj.reps[-1]
    t0 = float(rng.uniform(first.start_s, first.start_s + 0.3 * (first.peak_s - first.start_s)))
    t1 = float(rng.uniform(last.end_s - 0.3 * (last.end_s - last.peak_s), last.end_s))
    keep = (traj.t >= t0) & (traj.t <= t1)
    grid = np.arange(round((t1 - t0) * rate_hz) + 1) / rate_hz
    angle = np.interp(grid + t0, traj.t[keep], traj.angle_deg[keep])
    reps = tuple(replace(r, start_s=max(r.start_s - t0, 0.0), peak_s=r.peak_s - t0,
                         end_s=min(r.end_s - t0, float(grid[-1]))) for r in traj.reps)
    return synth.JointTrajectory(grid, angle, reps)


def _secondary_wobble(track_n: int, fine: float, amp_deg: float, freq_hz: float, axis: FloatArray,
                      rng: np.random.Generator) -> FloatArray:
    """A sinusoidal rotation (rotation vector, world frame) of ``amp_deg`` about ``axis``."""
    t = np.arange(track_n) / fine
    phase = float(rng.uniform(0.0, 2.0 * np.pi))
    return np.asarray(np.deg2rad(amp_deg) * np.sin(2.0 * np.pi * freq_hz * t + phase) * axis[:, None])


def _quadrature(theta: FloatArray, fine: float, period_s: float) -> FloatArray:
    """The rotation a quarter period later, zero-mean: with ``theta`` it draws a circle."""
    t = np.arange(theta.size) / fine
    q = np.interp(t + 0.25 * period_s, t, theta)
    return np.asarray(q - q.mean())


def _donning_track(rng: np.random.Generator, duration_s: float, fine: float, yaw: float) -> synth._Track:
    """Putting the device on or taking it off: large, irregular rotations and translations."""
    n = round(duration_s * fine)
    tr = synth._Track.still(n, np.deg2rad(float(rng.uniform(0.0, 90.0))), yaw,
                            np.array([0.0, 0.0, 1.0]), 0.1)
    t = np.arange(n) / fine
    env = synth._raised_cosine(np.clip(np.minimum(t, duration_s - t) / 0.5, 0.0, 1.0))
    tr.wobble = synth._smooth_noise(rng, n, fine, float(rng.uniform(0.5, 1.5)),
                                    np.deg2rad(float(rng.uniform(30.0, 70.0))), 3, centred=True) * env
    tr.pivot = tr.pivot + synth._smooth_noise(rng, n, fine, 1.0, 0.1, 3, centred=True) * env
    return tr


def simulate_case(rng: np.random.Generator, case: str, sensor: synth.SensorModel = DEFAULT_SENSOR,
                  exercise: Exercise | str | None = None) -> tuple[str, synth.SyntheticSession]:
    """One recording of a hard ``case`` (see :data:`CASES`); returns the name to analyse it with
    (a modelled exercise, or an unmodelled name for the generic path) and the session."""
    fine = synth._fine_rate(sensor)
    modelled = [e for e in Exercise if e is not Exercise.OTHER]
    name = str(Exercise(exercise).value if exercise else rng.choice([e.value for e in modelled]))
    if case in ("vertical_axis", "unknown"):
        name = "external_rotation" if case == "vertical_axis" else str(
            rng.choice(["pendulum", "row", "trunk_bend", "hip_abduction"]))
        spec = UNMODELLED[name]
    else:
        spec = spec_for(name)
    rom = float(rng.uniform(*spec.rom_range_deg))
    tempo = float(rng.uniform(0.4, 1.0))
    wobble = np.zeros(3)
    if case == "cut_close":
        traj = _cut(synth.rep_trajectory(rng, n_reps=int(rng.integers(12, 21)), rom_deg=rom, tempo_hz=tempo,
                                         style=replace(CLEAN, rest_between_s=(0.0, 0.1)), rate_hz=fine), rng, fine)
    elif case == "holds":
        style = replace(CLEAN, p_hold=0.5, hold_s=(2.0, 5.0), p_pause=0.3, pause_s=(2.0, 5.0))
        traj = synth.rep_trajectory(rng, n_reps=int(rng.integers(8, 13)), rom_deg=rom, tempo_hz=tempo,
                                    style=style, rate_hz=fine)
    elif case == "blocks":
        # blocks join end to start: no baseline jitter, so the joints are continuous
        held = replace(CLEAN, p_hold=1.0, hold_s=(4.5, 5.5), lead_in_s=(1.0, 2.0), baseline_jitter_deg=0.0)
        fast = replace(CLEAN, lead_in_s=(0.0, 0.5), rest_between_s=(0.0, 0.2), baseline_jitter_deg=0.0)
        low = replace(fast, rom_spread=0.1)
        traj = _concat([
            synth.rep_trajectory(rng, n_reps=10, rom_deg=rom, tempo_hz=tempo, style=held, rate_hz=fine),
            synth.rep_trajectory(rng, n_reps=10, rom_deg=rom, tempo_hz=1.4, style=fast, rate_hz=fine),
            synth.rep_trajectory(rng, n_reps=10, rom_deg=0.4 * rom, tempo_hz=tempo, style=low, rate_hz=fine),
        ], fine)
    elif case == "slow_wobble":
        traj = synth.rep_trajectory(rng, n_reps=int(rng.integers(5, 9)), rom_deg=rom,
                                    tempo_hz=float(rng.uniform(0.2, 0.35)), style=CLEAN, rate_hz=fine)
        wobble = np.cross(spec.axis, VERTICAL if abs(spec.axis[2]) < 0.9 else ML_AXIS)
        # the bias walk is added explicitly below, in place of the sensor model's slow drift
        sensor = replace(sensor, gyr_bias_drift_dps=0.0)
    else:  # vertical_axis, unknown, surrounded: clean reps of the exercise
        traj = synth.rep_trajectory(rng, n_reps=int(rng.integers(8, 16)), rom_deg=rom, tempo_hz=tempo,
                                    style=replace(CLEAN, p_partial=0.1), rate_hz=fine)
    yaw = float(rng.uniform(-np.pi, np.pi))
    track = synth._set_track(rng, spec, traj, fine, yaw, CLEAN)
    # extra rotations fade in and out over a second, so the set joins its neighbours smoothly
    tt = np.arange(track.theta.size) / fine
    fade = synth._raised_cosine(np.clip(np.minimum(tt, tt[-1] - tt), 0.0, 1.0))
    if case == "slow_wobble":
        track.wobble = track.wobble + fade * _secondary_wobble(
            track.theta.size, fine, 8.0, float(rng.uniform(0.8, 1.2)), wobble / np.linalg.norm(wobble), rng)
    if name == "pendulum":
        circle = _quadrature(track.theta, fine, 1.0 / tempo)
        track.wobble = track.wobble + AP_AXIS[:, None] * (fade * circle)[None, :]
    pieces: list[tuple[str, synth._Track]] = []
    if case == "surrounded":
        before = str(rng.choice(["walk", "fidget", "don"]))
        after = str(rng.choice(["walk", "fidget", "don"]))
        pieces.append((before, _other_track(rng, before, spec, fine)))
        pieces.append(("rest", synth._non_exercise_track(rng, "rest", spec, float(rng.uniform(1.0, 3.0)), fine, yaw)))
        pieces.append(("set", track))
        pieces.append(("rest", synth._non_exercise_track(rng, "rest", spec, float(rng.uniform(1.0, 3.0)), fine, yaw)))
        pieces.append((after, _other_track(rng, after, spec, fine)))
    elif case == "cut_close":
        pieces.append(("set", track))
    else:
        pieces.append(("rest", synth._non_exercise_track(rng, "rest", spec, float(rng.uniform(3.0, 8.0)), fine, yaw)))
        pieces.append(("set", track))
        pieces.append(("rest", synth._non_exercise_track(rng, "rest", spec, float(rng.uniform(3.0, 8.0)), fine, yaw)))
    ses = synth._assemble(rng, pieces, fine, sensor, spec.exercise, [(traj, yaw)])
    if case == "slow_wobble":
        ses = _with_bias_walk(rng, ses, BIAS_WALK_DPS)
    return name, ses


BIAS_WALK_DPS = 0.5  # RMS of the slow gyroscope bias change over a set (MEMS bias instability)


def _with_bias_walk(rng: np.random.Generator, ses: synth.SyntheticSession, rms_dps: float) -> synth.SyntheticSession:
    """Add a random walk of the gyroscope bias (integrated white noise, zero at the start)."""
    rec = ses.recording
    steps = rng.standard_normal((rec.t.size, 3)) * np.sqrt(np.diff(rec.t, prepend=rec.t[0]))[:, None]
    walk = np.cumsum(steps, axis=0)
    walk *= np.deg2rad(rms_dps) / max(float(np.sqrt(np.mean(walk * walk))), 1e-12)
    gyr = rec.gyr + walk
    out = ImuRecording(rec.t, rec.acc, gyr, acc_range=rec.acc_range, gyr_range=rec.gyr_range)
    return replace(ses, recording=out, gyr_bias=ses.gyr_bias + walk.mean(axis=0))


def _other_track(rng: np.random.Generator, kind: str, spec: ExerciseSpec, fine: float) -> synth._Track:
    yaw = float(rng.uniform(-np.pi, np.pi))
    if kind == "don":
        return _donning_track(rng, float(rng.uniform(4.0, 10.0)), fine, yaw)
    return synth._non_exercise_track(rng, kind, spec, float(rng.uniform(20.0, 40.0)), fine, yaw)


def simulate_donning(rng: np.random.Generator, exercise: Exercise | str, duration_s: float,
                     sensor: synth.SensorModel = DEFAULT_SENSOR) -> synth.SyntheticSession:
    """Non-exercise motion only: putting the device on and taking it off, walking and fidgeting."""
    spec = spec_for(exercise)
    fine = synth._fine_rate(sensor)
    pieces: list[tuple[str, synth._Track]] = []
    total = 0.0
    while total < duration_s:
        kind = str(rng.choice(["don", "walk", "fidget", "rest"]))
        tr = _other_track(rng, kind, spec, fine)
        pieces.append((kind, tr))
        total += tr.theta.size / fine
    return synth._assemble(rng, pieces, fine, sensor, spec.exercise, [])
