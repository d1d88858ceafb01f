"""Synthetic walking courses for the step counter: bouts, turns and pauses wherever a device is worn.

Each course alternates walking bouts (from 4 steps, 40-125 steps/min, irregular step times, some
with a U-turn) with standing, sitting (with the sit-to-stand bump) or fidgeting, and knows every
heel strike. The acceleration of each placement is a sum of the components gait studies report
(Zijlstra & Hof 2003, Gait Posture 18(2)): a step-periodic vertical/forward bounce of the trunk,
a stride-periodic limb swing and lateral sway, and heel-strike transients that are strong for
the foot on the instrumented side and weaker for the other foot; a bout starts with a weight shift
and its first and last steps are shorter. A thigh (trouser pocket) and an
ankle repeat once per stride; the trunk (lower back, hip, neck) once per step. The world-frame
acceleration plus gravity is seen through a random mounting, the body's heading (turns) and
posture, then sampled with jitter and noise. Every random draw comes from the generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from motion.quat import from_axis_angle, from_rotvec_soa, qmul_soa, qrot_soa
from motion.recording import GRAVITY, AccRecording

from .synth import SensorModel, TruthBlock, _smooth_noise

FloatArray = NDArray[np.float64]

DEFAULT_SENSOR = SensorModel()
WALK_PLACEMENTS = ("wrist", "upper_arm", "hand", "hip", "lower_back", "thigh", "ankle", "bag")


@dataclass(frozen=True)
class _Body:
    """How a placement sees gait: amplitudes relative to the trunk's vertical bounce."""

    bounce: float  # step-periodic vertical/forward trunk bounce
    swing: float  # stride-periodic limb or bag swing, forward linear acceleration
    asym: float  # stride-periodic vertical part: what makes the magnitude repeat once per stride
    impact_own: float  # heel-strike transient of the instrumented side, m/s²
    impact_other: float  # of the other foot
    sway_deg: float  # orientation wobble while walking
    sit_pitch_deg: float  # posture change when sitting


_BODY = {
    "wrist": _Body(0.5, 1.0, 0.15, 2.5, 2.5, 6.0, 40.0),
    "upper_arm": _Body(0.7, 0.6, 0.1, 3.0, 3.0, 5.0, 15.0),
    "hand": _Body(0.6, 0.1, 0.0, 2.0, 2.0, 4.0, 20.0),  # held in front, reading the screen
    "hip": _Body(1.0, 0.2, 0.05, 5.0, 4.0, 3.0, 60.0),
    "lower_back": _Body(1.0, 0.1, 0.0, 5.0, 5.0, 3.0, 30.0),
    "thigh": _Body(0.6, 1.0, 0.3, 6.0, 4.0, 8.0, 90.0),  # trouser pocket: once per stride
    "ankle": _Body(0.6, 1.2, 0.3, 12.0, 8.0, 10.0, 10.0),  # own strike and swing, once per stride
    "bag": _Body(0.8, 0.5, 0.1, 2.0, 2.0, 10.0, 0.0),
}


@dataclass(frozen=True)
class CoursePlan:
    """Structure of a simulated walking course."""

    n_bouts: tuple[int, int] = (3, 6)
    bout_steps: tuple[int, int] = (4, 40)
    cadence_spm: tuple[float, float] = (40.0, 125.0)
    step_cv: tuple[float, float] = (0.02, 0.12)  # step-time variability: 2 % healthy, 12 % with aids
    p_turn: float = 0.5  # probability of a U-turn in a bout of >= 10 steps
    pauses: tuple[str, ...] = ("stand", "sit", "fidget")
    pause_s: tuple[float, float] = (8.0, 30.0)


@dataclass(frozen=True)
class WalkCourse:
    """A simulated course: recording, true heel-strike instants (s) and what happened when."""

    recording: AccRecording
    step_times: FloatArray
    blocks: tuple[TruthBlock, ...]  # kind: walk, stand, sit, fidget
    placement: str

    def steps_in(self, kind: str) -> int:
        """True steps inside the blocks of ``kind``."""
        return int(sum(np.count_nonzero((self.step_times >= b.start_s) & (self.step_times < b.end_s))
                       for b in self.blocks if b.kind == kind))


def _step_times(rng: np.random.Generator, n: int, cadence: float, cv: float, t0: float,
                turn_at: int | None) -> FloatArray:
    period = 60.0 / cadence
    iv = period * np.clip(1.0 + cv * rng.standard_normal(max(n - 1, 0)), 0.6, 1.6)
    if turn_at is not None:  # a U-turn takes about three shorter, slower steps
        iv[turn_at:turn_at + 3] *= 1.25
    return np.asarray(t0 + np.concatenate(([0.0], np.cumsum(iv))))


def _bout(rng: np.random.Generator, body: _Body, steps: FloatArray, t: FloatArray, cadence: float,
          turn: bool) -> tuple[FloatArray, FloatArray]:
    """World acceleration (3, n) and heading (n) of one bout on the grid ``t`` around ``steps``."""
    period = 60.0 / cadence
    k = np.arange(steps.size, dtype=np.float64)
    # step phase: 0 at each heel strike, continued half a step before the first and after the last
    tt = np.concatenate(([steps[0] - period], steps, [steps[-1] + period]))
    kk = np.concatenate(([-1.0], k, [k[-1] + 1.0]))
    phase = 2 * np.pi * np.interp(t, tt, kk)
    env = np.clip(np.minimum(t - (steps[0] - 0.5 * period), steps[-1] + 0.5 * period - t) / (0.5 * period), 0.0, 1.0)
    speed = 0.3 + 0.8 * cadence / 100.0
    a_v = 0.25 * GRAVITY * speed**2
    step_gain = rng.uniform(0.8, 1.2, steps.size)  # step-to-step variability
    step_gain[[0, -1]] *= rng.uniform(0.5, 0.8, 2)  # starting and stopping steps are shorter
    gain = np.interp(t, steps, step_gain)
    acc = np.zeros((3, t.size))
    acc[2] = body.bounce * a_v * np.cos(phase)
    acc[0] = 0.5 * body.bounce * a_v * np.sin(phase + 0.4)
    stride = 0.5 * phase + float(rng.uniform(-0.3, 0.3))
    acc[1] = 0.3 * a_v * np.sin(stride)  # lateral sway, once per stride
    swing = body.swing * a_v * speed
    acc[0] += swing * np.sin(stride)
    acc[2] += body.asym * a_v * np.cos(stride + 0.7)
    acc *= env * gain
    # heel strikes: damped 16 Hz oscillations, alternately own and other foot
    fs = 1.0 / (t[1] - t[0])
    idx = np.clip(np.searchsorted(t, steps), 0, t.size - 1)
    pulse = np.zeros(t.size)
    own = (np.arange(steps.size) % 2) == 0
    pulse[idx] = np.where(own, body.impact_own, body.impact_other) * rng.uniform(0.7, 1.3, steps.size) * speed
    pulse[idx[[0, -1]]] *= step_gain[[0, -1]]
    w0 = 2 * np.pi * 16.0 / fs
    r = np.exp(-1.0 / (0.035 * fs))
    resp = signal.lfilter([0.0, np.sin(w0)], [1.0, -2 * r * np.cos(w0), r * r], pulse)
    acc[2] += resp
    acc[0] += 0.5 * resp
    # weight shift onto the stance leg before the first step (anticipatory postural adjustment)
    u = np.clip((t - (steps[0] - period)) / period, 0.0, 1.0)
    acc[1] += float(rng.uniform(0.3, 1.0)) * np.sin(np.pi * u)
    heading = np.zeros(t.size)
    if turn:
        # U-turn over the middle three steps: heading turns by pi, centripetal push sideways
        mid = steps.size // 2
        t_a, t_b = steps[mid - 1], steps[min(mid + 2, steps.size - 1)]
        u = np.clip((t - t_a) / max(t_b - t_a, 1e-3), 0.0, 1.0)
        heading = np.pi * u * u * (3 - 2 * u)
        rate = np.gradient(heading, t)
        acc[1] += 0.8 * rate  # v * omega with v ~ 0.8 m/s
    return acc, heading


def simulate_course(rng: np.random.Generator, placement: str, plan: CoursePlan = CoursePlan(),
                    sensor: SensorModel = DEFAULT_SENSOR) -> WalkCourse:
    """A course of walking bouts and pauses for a device at ``placement`` (see WALK_PLACEMENTS)."""
    # the plan: pause, bout, pause, bout, ..., pause
    kinds: list[tuple[str, float]] = []
    bouts: list[tuple[int, float, float, bool]] = []
    n_bouts = int(rng.integers(plan.n_bouts[0], plan.n_bouts[1] + 1))
    for b in range(n_bouts):
        kinds.append((str(rng.choice(list(plan.pauses))), float(rng.uniform(*plan.pause_s))))
        n = int(rng.integers(plan.bout_steps[0], plan.bout_steps[1] + 1))
        cad = float(rng.uniform(*plan.cadence_spm))
        turn = bool(n >= 10 and rng.random() < plan.p_turn)
        bouts.append((n, cad, float(rng.uniform(*plan.step_cv)), turn))
        kinds.append(("walk", -1.0 - b))
    kinds.append((str(rng.choice(list(plan.pauses))), float(rng.uniform(*plan.pause_s))))
    return _render(rng, placement, kinds, bouts, sensor)


def _render(rng: np.random.Generator, placement: str, kinds: list[tuple[str, float]],
            bouts: list[tuple[int, float, float, bool]], sensor: SensorModel) -> WalkCourse:
    if placement not in _BODY:
        raise ValueError(f"placement must be one of {WALK_PLACEMENTS}, got {placement!r}")
    body = _BODY[placement]
    fine = max(200.0, 4.0 * sensor.rate_hz)
    # lay out the timeline: a bout lasts from half a step before its first strike to half after
    blocks: list[TruthBlock] = []
    all_steps: list[FloatArray] = []
    t = 0.0
    for kind, dur in kinds:
        if kind == "walk":
            n, cad, cv, turn = bouts[int(-dur - 1.0)]
            st = _step_times(rng, n, cad, cv, t + 60.0 / cad, (n // 2 - 1) if turn else None)
            end = float(st[-1] + 60.0 / cad)
            all_steps.append(st)
            blocks.append(TruthBlock("walk", t, end))
            t = end
        else:
            blocks.append(TruthBlock(kind, t, t + dur))
            t += dur
    n_fine = int(np.ceil(t * fine)) + 1
    grid = np.arange(n_fine) / fine
    acc_w = np.zeros((3, n_fine))
    heading = np.zeros(n_fine)
    pitch = np.zeros(n_fine)
    yaw0 = 0.0
    bi = 0
    for blk in blocks:
        sel = (grid >= blk.start_s) & (grid < blk.end_s)
        if blk.kind == "walk":
            n, cad, _, turn = bouts[bi]
            a, h = _bout(rng, body, all_steps[bi], grid[sel], cad, turn)
            acc_w[:, sel] += a
            heading[sel] = yaw0 + h
            yaw0 = float(heading[sel][-1]) if sel.any() else yaw0
            bi += 1
            continue
        heading[sel] = yaw0
        m = int(sel.sum())
        if blk.kind == "sit":
            # sit down and stand up again: posture change and the body's push at each end
            u = (grid[sel] - blk.start_s) / max(blk.end_s - blk.start_s, 1e-3)
            ramp = np.clip(np.minimum(u, 1.0 - u) * (blk.end_s - blk.start_s) / 2.0, 0.0, 1.0)
            pitch[sel] = np.deg2rad(body.sit_pitch_deg) * ramp * ramp * (3 - 2 * ramp)
            acc_w[2, sel] += 2.0 * np.gradient(np.gradient(0.4 * ramp, grid[sel]), grid[sel]) if m > 2 else 0.0
        elif blk.kind == "fidget":
            # bursts of small random movements: smooth noise gated by a slow random envelope
            env = (_smooth_noise(rng, m, fine, 0.2, 1.0)[0] > 0.2).astype(np.float64)
            if m > 30:
                env = np.clip(signal.sosfiltfilt(signal.butter(2, 1.0, fs=fine, output="sos"), env), 0.0, 1.0)
            acc_w[:, sel] += _smooth_noise(rng, m, fine, float(rng.uniform(1.0, 3.0)),
                                           float(rng.uniform(0.3, 1.2)), 3) * env
        acc_w[:, sel] += _smooth_noise(rng, m, fine, 1.0, 0.03, 3)  # standing sway
    acc_w[2] += GRAVITY
    draw = rng.standard_normal(4)
    mount = draw / np.linalg.norm(draw)
    walking = np.zeros(n_fine)
    for blk in blocks:
        if blk.kind == "walk":
            walking[(grid >= blk.start_s) & (grid < blk.end_s)] = 1.0
    sway = from_rotvec_soa(_smooth_noise(rng, n_fine, fine, 1.5, np.deg2rad(body.sway_deg), 3) * walking)
    q = from_axis_angle(np.array([0.0, 0.0, 1.0]), heading).T
    q = qmul_soa(q, from_axis_angle(np.array([0.0, 1.0, 0.0]), pitch).T)
    q = qmul_soa(q, sway)
    q = qmul_soa(q, mount[:, None])
    acc_s = qrot_soa(q, acc_w, inverse=True)
    mean_dt = 1.0 / sensor.rate_hz
    k = int(grid[-1] / mean_dt * 1.1) + 10
    jitter = np.clip(1.0 + sensor.jitter_frac * rng.standard_normal(k), 0.5, 1.5)
    ts = np.concatenate(([0.0], np.cumsum(mean_dt * jitter)))
    ts = ts[ts <= grid[-1]]
    acc = np.stack([np.interp(ts, grid, acc_s[i]) for i in range(3)], axis=1)
    acc += sensor.acc_noise_ms2 * rng.standard_normal(acc.shape)
    rail = sensor.acc_range_g * GRAVITY
    acc = np.clip(acc, -rail, rail)
    steps = np.concatenate(all_steps) if all_steps else np.zeros(0)
    return WalkCourse(AccRecording(ts, acc, acc_range=rail), steps, tuple(blocks), placement)


def simulate_still(rng: np.random.Generator, duration_s: float, kinds: tuple[str, ...] = ("stand", "sit", "fidget"),
                   sensor: SensorModel = DEFAULT_SENSOR, placement: str = "wrist") -> WalkCourse:
    """Only standing, sitting and fidgeting, for false-step checks (a course without bouts)."""
    n = max(int(duration_s // 30.0), 1)
    blocks = [(str(rng.choice(list(kinds))), duration_s / n) for _ in range(n)]
    return _render(rng, placement, blocks, [], sensor)
