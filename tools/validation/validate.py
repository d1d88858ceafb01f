"""Evaluation of the library against ground truth: synthetic benchmarks and real recordings.

Orientation errors follow the BROAD error definitions (Laidig et al. 2021, Data 6(7):72,
Sec. 4; reference implementation ``broad_utils.py`` of the BROAD repository): the error
quaternion in the reference frame is ``q_imu * q_opt^-1``; total error is its rotation angle,
inclination error its rotation angle after removing the rotation about the vertical. For 6D
(magnetometer-free) estimates the heading is arbitrary, so, as in the 6D evaluation of VQF
(Laidig & Seel 2023), one constant heading offset -- the circular mean of the heading error
over the evaluated samples -- is removed before computing the errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.signal import butter, find_peaks, sosfiltfilt

from motion.analysis import DEFAULT_ANALYSIS, AnalysisParams, analyze_exercise
from motion.exercises import MODELLED_EXERCISES, Exercise
from motion.fusion import DEFAULT_FUSION, FusionParams, estimate_orientation
from motion.gait import DEFAULT_STRIDES, StrideParams, detect_strides, interval_ranges
from motion.quat import from_axis_angle, qconj, qmul
from motion.recording import ImuRecording
from motion.steps import count_steps
from simulation import synth, synth_reps

from .datasets import (
    BROAD_FILES,
    GAITMAP_MOCAP_RATE_HZ,
    GAITMAP_RATE_HZ,
    load_broad,
    load_gaitmap,
    load_spar,
)

FloatArray = NDArray[np.float64]


# ---------------------------------------------------------------------------- orientation


@dataclass(frozen=True)
class OrientationErrors:
    """RMSE (degrees) over the evaluated samples, after removing one heading offset."""

    inclination_rmse_deg: float
    total_rmse_deg: float
    heading_offset_deg: float
    samples: int


def orientation_errors(q_est: FloatArray, q_ref: FloatArray, mask: NDArray[np.bool_]) -> OrientationErrors:
    """BROAD inclination/total RMSE of 6D estimates (heading offset removed, see module doc)."""
    ok = np.asarray(mask, dtype=bool) & np.all(np.isfinite(q_ref), axis=1) & np.all(np.isfinite(q_est), axis=1)
    qe = q_est[ok] / np.linalg.norm(q_est[ok], axis=1, keepdims=True)
    qr = q_ref[ok] / np.linalg.norm(q_ref[ok], axis=1, keepdims=True)
    d = qmul(qe, qconj(qr))
    heading = 2.0 * np.arctan2(d[:, 3], d[:, 0])
    offset = float(np.arctan2(np.sin(heading).mean(), np.cos(heading).mean()))
    d = qmul(from_axis_angle(np.array([0.0, 0.0, 1.0]), np.array(-offset)), d)
    total = 2.0 * np.arccos(np.clip(np.abs(d[:, 0]), 0.0, 1.0))
    incl = 2.0 * np.arccos(np.clip(np.sqrt(d[:, 0] ** 2 + d[:, 3] ** 2), 0.0, 1.0))
    return OrientationErrors(float(np.rad2deg(np.sqrt(np.mean(incl**2)))),
                             float(np.rad2deg(np.sqrt(np.mean(total**2)))),
                             float(np.rad2deg(offset)), int(ok.sum()))


@dataclass(frozen=True)
class BroadResult:
    trial: str
    errors: OrientationErrors
    vqf_errors: OrientationErrors | None  # the same metric for vqf.offlineVQF, when installed


def evaluate_broad(root: Path | None = None, params: FusionParams = DEFAULT_FUSION,
                   with_vqf: bool = True) -> list[BroadResult]:
    """Fusion accuracy on the four BROAD trials (movement samples)."""
    out = []
    for name in BROAD_FILES:
        trial = load_broad(name, root)
        ori = estimate_orientation(trial.recording(), params)
        ref = None
        if with_vqf:
            try:
                import vqf

                q6 = vqf.offlineVQF(trial.gyr, trial.acc, None, 1.0 / trial.rate_hz)["quat6D"]
                ref = orientation_errors(q6, trial.opt_quat, trial.movement)
            except ImportError:
                ref = None
        out.append(BroadResult(trial.name, orientation_errors(ori.quat, trial.opt_quat, trial.movement), ref))
    return out


# ---------------------------------------------------------------------------- gaitmap


@dataclass(frozen=True)
class GaitmapResult:
    """Per foot: detected vs labelled stride counts; foot sagittal range vs motion capture."""

    detected: dict[str, int]
    labelled: dict[str, int]
    rom_errors_deg: FloatArray = field(repr=False)  # IMU minus mocap range, every labelled stride

    @property
    def stride_err_max(self) -> int:
        return max(abs(self.detected[f] - self.labelled[f]) for f in self.detected)

    @property
    def rom_rmse_deg(self) -> float:
        return float(np.sqrt(np.mean(self.rom_errors_deg**2)))

    @property
    def rom_bias_deg(self) -> float:
        return float(np.mean(self.rom_errors_deg))


def mocap_foot_pitch_deg(heel: FloatArray, toe: FloatArray) -> FloatArray:
    """Sagittal foot angle from heel and toe markers: elevation of the heel-to-toe vector."""
    v = toe - heel
    return np.asarray(np.rad2deg(np.arctan2(v[:, 2], np.hypot(v[:, 0], v[:, 1]))))


def evaluate_gaitmap(root: Path | None = None, params: StrideParams = DEFAULT_STRIDES) -> GaitmapResult:
    """Stride counts and foot sagittal range per labelled stride on the gaitmap example."""
    feet = load_gaitmap(root)
    detected: dict[str, int] = {}
    labelled: dict[str, int] = {}
    errs = []
    for name, foot in feet.items():
        res = detect_strides(foot.recording, params)
        detected[name] = res.count
        labelled[name] = int(foot.stride_start.size)
        imu = res.ranges_deg(foot.stride_start, foot.stride_end)
        pitch = mocap_foot_pitch_deg(foot.heel_mm, foot.toe_mm)
        scale = GAITMAP_MOCAP_RATE_HZ / GAITMAP_RATE_HZ  # both systems start together
        ms = np.rint(foot.stride_start * scale).astype(np.intp)
        me = np.minimum(np.rint(foot.stride_end * scale).astype(np.intp), pitch.size - 1)
        errs.append(imu - interval_ranges(pitch, ms, me))
    return GaitmapResult(detected, labelled, np.concatenate(errs))


# ---------------------------------------------------------------------------- synthetic reps


@dataclass(frozen=True)
class RepsBenchmark:
    """Synthetic repetition benchmark."""

    sets: int
    sets_within1: int
    rom_errors_deg: FloatArray = field(repr=False)
    false_reps_sessions: int
    non_exercise_sessions_s: float
    false_reps_daily: int
    daily_s: float
    per_exercise_within1: dict[str, float] = field(default_factory=dict)

    @property
    def within1_pct(self) -> float:
        return 100.0 * self.sets_within1 / max(self.sets, 1)

    @property
    def rom_mae_deg(self) -> float:
        return float(np.mean(np.abs(self.rom_errors_deg))) if self.rom_errors_deg.size else float("nan")

    @property
    def false_per_10min(self) -> float:
        t = self.non_exercise_sessions_s + self.daily_s
        return 600.0 * (self.false_reps_sessions + self.false_reps_daily) / t if t > 0 else float("nan")


RATES_HZ = (25.0, 50.0, 100.0, 200.0)


def evaluate_reps_synthetic(seed: int = 20260101, rounds: int = 6, daily_s: float = 600.0,
                            params: AnalysisParams = DEFAULT_ANALYSIS) -> RepsBenchmark:
    """Sets of every exercise at random rates, plus ``daily_s`` of non-exercise motion each."""
    rng = np.random.default_rng(seed)
    sets = within = false_s = false_d = 0
    non_ex = daily = 0.0
    errs: list[float] = []
    per_ex: dict[str, list[bool]] = {}
    for _ in range(rounds):
        for ex in MODELLED_EXERCISES:
            sensor = synth.SensorModel(rate_hz=float(rng.choice(RATES_HZ)))
            ses = synth.simulate_session(rng, ex, sensor=sensor)
            est = analyze_exercise(ses.recording, ex, params).reps
            peaks = np.array([r.peak_s for r in est])
            in_set = np.zeros(peaks.size, dtype=bool)
            for st in ses.sets:
                inside = (peaks >= st.start_s) & (peaks <= st.end_s)
                in_set |= inside
                ok = abs(int(inside.sum()) - len(st.reps)) <= 1
                sets += 1
                within += ok
                per_ex.setdefault(ex.value, []).append(ok)
                for tr in st.reps:
                    if peaks.size:
                        j = int(np.argmin(np.abs(peaks - tr.peak_s)))
                        if abs(peaks[j] - tr.peak_s) < 1.0:
                            errs.append(est[j].rom_deg - tr.rom_deg)
            false_s += int((~in_set).sum())
            non_ex += ses.non_exercise_s
    for ex in MODELLED_EXERCISES:
        sensor = synth.SensorModel(rate_hz=float(rng.choice(RATES_HZ)))
        day = synth.simulate_daily_motion(rng, ex, daily_s, sensor=sensor)
        false_d += analyze_exercise(day.recording, ex, params).n_reps
        daily += float(day.recording.t[-1] - day.recording.t[0])
    return RepsBenchmark(sets, within, np.asarray(errs), false_s, non_ex, false_d, daily,
                         {k: 100.0 * float(np.mean(v)) for k, v in per_ex.items()})


# ---------------------------------------------------------------------------- synthetic steps


@dataclass(frozen=True)
class StepsBenchmark:
    errors_pct: FloatArray = field(repr=False)  # signed, per recording
    placements: tuple[str, ...] = ()

    @property
    def mape_pct(self) -> float:
        return float(np.mean(np.abs(self.errors_pct)))


def evaluate_steps_synthetic(seed: int = 20260102, n: int = 45) -> StepsBenchmark:
    """Walks at 60-130 steps/min (wrist, hip, foot; 25-100 Hz) with rest before and after."""
    rng = np.random.default_rng(seed)
    errs = []
    places = []
    for i in range(n):
        placement = ("wrist", "hip", "foot")[i % 3]
        sensor = synth.SensorModel(rate_hz=float(rng.choice((25.0, 50.0, 100.0))))
        gait = synth.simulate_gait(rng, float(rng.uniform(60.0, 130.0)), float(rng.uniform(60.0, 120.0)),
                                   placement, sensor, rest_s=float(rng.uniform(5.0, 15.0)))
        est = count_steps(gait.recording).total
        truth = gait.step_times.size
        errs.append(100.0 * (est - truth) / truth)
        places.append(placement)
    return StepsBenchmark(np.asarray(errs), tuple(places))


# ---------------------------------------------------------------------------- throughput


@dataclass(frozen=True)
class Throughput:
    samples: int
    ours_s: float  # best wall time of the complete analysis
    vqf_s: float  # best wall time of vqf.offlineVQF alone (NaN when vqf is missing)

    @property
    def msamples_per_s(self) -> float:
        return self.samples / self.ours_s / 1e6

    @property
    def ratio_vs_vqf(self) -> float:
        return self.vqf_s / self.ours_s


def throughput_recording(seed: int = 20260103, minutes: float = 30.0) -> ImuRecording:
    """A 100 Hz session of about ``minutes`` with sets and other motion (uniform sampling)."""
    rng = np.random.default_rng(seed)
    sensor = synth.SensorModel(rate_hz=100.0, jitter_frac=0.0, drop_fraction=0.0)
    n_sets = max(int(minutes / 2.5), 1)
    plan = synth.SessionPlan(n_sets=(n_sets, n_sets), between_s=(60.0, 120.0))
    return synth.simulate_session(rng, Exercise.KNEE_EXTENSION, plan, sensor).recording


def measure_throughput(rec: ImuRecording, repeats: int = 7,
                       clock: Callable[[], float] = time.perf_counter) -> Throughput:
    """Best-of-``repeats`` wall time of the complete analysis (validation, fusion, sets, reps,
    ROM) from raw arrays, and of ``vqf.offlineVQF`` on the same arrays, interleaved."""
    t, acc, gyr = rec.t.copy(), np.ascontiguousarray(rec.acc), np.ascontiguousarray(rec.gyr)
    offline: Callable[[], object] | None = None
    try:
        import vqf

        def run_vqf() -> object:
            return vqf.offlineVQF(gyr, acc, None, 1.0 / rec.rate_hz)

        offline = run_vqf
    except ImportError:
        pass
    ours = vqfs = float("inf")
    for _ in range(repeats):
        t0 = clock()
        analyze_exercise(ImuRecording(t, acc, gyr), Exercise.KNEE_EXTENSION)
        ours = min(ours, clock() - t0)
        if offline is not None:
            t0 = clock()
            offline()
            vqfs = min(vqfs, clock() - t0)
    return Throughput(int(t.size), ours, vqfs if offline is not None else float("nan"))


# ---------------------------------------------------------------------------- real repetitions: SPAR


@dataclass(frozen=True)
class SparResult:
    """Counts per SPAR set (generic counter and the naive baseline) against the protocol's 20."""

    files: tuple[str, ...]
    subjects: tuple[int, ...]
    exercises: tuple[str, ...]
    truth: NDArray[np.int64] = field(repr=False)
    counts: NDArray[np.int64] = field(repr=False)
    baseline: NDArray[np.int64] = field(repr=False)
    circles: FloatArray = field(repr=False)  # circles drawn in each clip by phase (circles_by_phase)
    # cycles each clip holds by its periodicity (cycles_by_period): of the gyroscope, of the accelerometer
    cycles_gyr: FloatArray = field(repr=False)
    cycles_acc: FloatArray = field(repr=False)

    def _select(self, exercise: str | None, subject: int | None) -> NDArray[np.bool_]:
        m = np.ones(self.truth.size, dtype=bool)
        if exercise is not None:
            m &= np.asarray(self.exercises) == exercise
        if subject is not None:
            m &= np.asarray(self.subjects) == subject
        return m

    def within1_pct(self, exercise: str | None = None, subject: int | None = None) -> float:
        m = self._select(exercise, subject)
        return 100.0 * float(np.mean(np.abs(self.counts[m] - self.truth[m]) <= 1))

    def mae_reps(self, exercise: str | None = None, subject: int | None = None) -> float:
        m = self._select(exercise, subject)
        return float(np.mean(np.abs(self.counts[m] - self.truth[m])))

    def baseline_within1_pct(self, exercise: str | None = None) -> float:
        m = self._select(exercise, None)
        return 100.0 * float(np.mean(np.abs(self.baseline[m] - self.truth[m]) <= 1))

    def baseline_mae_reps(self, exercise: str | None = None) -> float:
        m = self._select(exercise, None)
        return float(np.mean(np.abs(self.baseline[m] - self.truth[m])))

    def circles_mae(self, exercise: str, against: str = "counts") -> float:
        """Mean |counter (or protocol, ``against="truth"``) - circles drawn| over ``exercise``'s
        sets: for a circular motion, how far a count is from what the clip holds."""
        m = self._select(exercise, None)
        ref = self.counts if against == "counts" else self.truth
        return float(np.mean(np.abs(ref[m] - self.circles[m])))

    def rounded_circles_mae(self, exercise: str) -> float:
        """Mean |protocol - circles in the clip, rounded| over ``exercise``'s sets: what a counter
        that counts exactly the circles recorded would score against the protocol."""
        m = self._select(exercise, None)
        return float(np.mean(np.abs(self.truth[m] - np.floor(self.circles[m] + 0.5))))

    @property
    def exercise_names(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.exercises)))


def circles_by_phase(rec: ImuRecording) -> float:
    """Circles drawn in a clip, independently of the counter: the unwrapped angle of the
    gyroscope's two principal components (each scaled to unit variance) over 2 pi, the phase of a
    2-D oscillation, which advances by 2 pi per circle wherever the clip is cut. A zero-phase
    low-pass at twice the dominant frequency keeps the circle and drops the jitter that would add
    spurious turns (a band-pass's high-pass edge transient would lose ~0.3 circle per clip)."""
    g = rec.gyr - rec.gyr.mean(axis=0)
    _, vecs = np.linalg.eigh(g.T @ g)
    x = g @ vecs[:, [-1, -2]]
    freq = np.fft.rfftfreq(x.shape[0], 1.0 / rec.rate_hz)
    power = (np.abs(np.fft.rfft(x, axis=0)) ** 2).sum(axis=1)
    band = (freq >= 0.2) & (freq <= 3.0)  # rep tempi
    if not band.any():
        return float("nan")
    f0 = float(freq[band][np.argmax(power[band])])
    y = sosfiltfilt(butter(2, min(2.0 * f0, 0.45 * rec.rate_hz), "lowpass", fs=rec.rate_hz, output="sos"), x, axis=0)
    y /= np.maximum(y.std(axis=0), 1e-12)
    phase = np.unwrap(np.arctan2(y[:, 1], y[:, 0]))
    return float(abs(phase[-1] - phase[0]) / (2.0 * np.pi))


def cycles_by_period(t: FloatArray, x: FloatArray, lags_s: tuple[float, float] = (0.5, 8.0)) -> float:
    """Cycles a clip holds by its periodicity alone, a third count independent of the counter and
    of any axis: the clip's duration over the period of ``x`` (N, 3), the first highest peak of
    the biased autocorrelation of all three axes together (orientation-free, as in the
    autocorrelation gait and exercise counters: Moe-Nilssen & Helbostad 2004, Morris et al. 2014),
    sub-sample by parabolic interpolation. Rests or holds at a clip's ends count as time in the
    rhythm, so for clips that are not cut inside the motion it is an upper bound."""
    rate = (t.size - 1) / float(t[-1] - t[0])
    y = x - x.mean(axis=0)
    nfft = 1 << int(2 * t.size - 1).bit_length()
    spec = np.fft.rfft(y, n=nfft, axis=0)
    acf = np.fft.irfft((spec.real ** 2 + spec.imag ** 2).sum(axis=1), n=nfft)[:t.size]
    lo, hi = max(int(lags_s[0] * rate), 1), min(int(lags_s[1] * rate), t.size - 2)
    if hi <= lo:
        return float("nan")
    k = lo + int(np.argmax(acf[lo:hi + 1]))
    # the peak is picked on the biased estimate (it decays: multiples of the period score lower)
    # and placed on the unbiased one (the biased one's 1 - lag/N tilt shifts a peak to shorter lags)
    u = acf[k - 1:k + 2] / (t.size - np.arange(k - 1, k + 2))
    den = u[0] - 2.0 * u[1] + u[2]
    lag = k + (0.5 * (u[0] - u[2]) / den if den < 0 else 0.0)
    return float((t[-1] - t[0]) * rate / lag)


def naive_pc1_count(rec: ImuRecording, min_distance_s: float = 0.5) -> int:
    """Baseline: peaks of the gyroscope's first principal component above its RMS, at least
    ``min_distance_s`` apart (a plain peak count on the dominant rotation, no segmentation)."""
    g = rec.gyr - rec.gyr.mean(axis=0)
    _, vecs = np.linalg.eigh(g.T @ g)
    x = g @ vecs[:, -1]
    x = x * (1.0 if abs(x.max()) >= abs(x.min()) else -1.0)
    peaks, _ = find_peaks(x, height=float(np.sqrt(np.mean(x * x))),
                          distance=max(int(min_distance_s * rec.rate_hz), 1))
    return int(peaks.size)


def evaluate_spar(root: Path | None = None, params: AnalysisParams = DEFAULT_ANALYSIS) -> SparResult:
    """Generic counter on every SPAR set, analysed under SPAR's own exercise names (none has a
    kinematic model here: a wrist watch, not the upper-arm sensor of the shoulder models)."""
    sets = load_spar(root)
    counts = [analyze_exercise(s.recording, s.exercise, params).n_reps for s in sets]
    return SparResult(tuple(s.file for s in sets), tuple(s.subject for s in sets),
                      tuple(s.exercise for s in sets), np.array([s.reps for s in sets]),
                      np.array(counts), np.array([naive_pc1_count(s.recording) for s in sets]),
                      np.array([circles_by_phase(s.recording) if s.exercise == "pendulum" else np.nan
                                for s in sets]),
                      np.array([cycles_by_period(s.recording.t, s.recording.gyr) for s in sets]),
                      np.array([cycles_by_period(s.recording.t, s.recording.acc) for s in sets]))


# ---------------------------------------------------------------------------- hard synthetic cases


@dataclass(frozen=True)
class HardRepsBenchmark:
    """The hard generator cases (:mod:`synth_reps`): per case, sets within +-1; false reps in the
    walking, fidgeting and donning around sets and in ``donning_s`` of such motion alone."""

    within1: dict[str, list[bool]]
    false_reps: int
    non_exercise_s: float
    start_errors_s: FloatArray = field(repr=False)  # detected minus true rep start, matched reps

    @property
    def within1_pct(self) -> float:
        allv = [v for vs in self.within1.values() for v in vs]
        return 100.0 * float(np.mean(allv)) if allv else float("nan")

    def case_pct(self, case: str) -> float:
        return 100.0 * float(np.mean(self.within1[case]))

    @property
    def false_per_10min(self) -> float:
        return 600.0 * self.false_reps / self.non_exercise_s if self.non_exercise_s > 0 else float("nan")


def evaluate_reps_hard(seed: int = 20260104, rounds: int = 6, donning_s: float = 300.0,
                       params: AnalysisParams = DEFAULT_ANALYSIS) -> HardRepsBenchmark:
    """Every hard case ``rounds`` times at random rates, plus ``donning_s`` of putting the device
    on and off, walking and fidgeting for each modelled exercise."""
    rng = np.random.default_rng(seed)
    within: dict[str, list[bool]] = {c: [] for c in synth_reps.CASES}
    false = 0
    non_ex = 0.0
    starts: list[float] = []
    for _ in range(rounds):
        for case in synth_reps.CASES:
            sensor = synth.SensorModel(rate_hz=float(rng.choice(RATES_HZ)))
            name, ses = synth_reps.simulate_case(rng, case, sensor)
            est = analyze_exercise(ses.recording, name, params).reps
            peaks = np.array([r.peak_s for r in est])
            st = ses.sets[0]
            inside = (peaks >= st.start_s - 0.5) & (peaks <= st.end_s + 0.5)
            within[case].append(abs(int(inside.sum()) - len(st.reps)) <= 1)
            false += int((~inside).sum())
            non_ex += ses.non_exercise_s
            est_starts = np.array([r.start_s for r in est])
            for tr in st.reps:
                if est_starts.size:
                    j = int(np.argmin(np.abs(est_starts - tr.start_s)))
                    if abs(est_starts[j] - tr.start_s) < 1.5:
                        starts.append(float(est_starts[j] - tr.start_s))
    for ex in MODELLED_EXERCISES:
        sensor = synth.SensorModel(rate_hz=float(rng.choice(RATES_HZ)))
        day = synth_reps.simulate_donning(rng, ex, donning_s, sensor)
        false += analyze_exercise(day.recording, ex, params).n_reps
        non_ex += float(day.recording.t[-1] - day.recording.t[0])
    return HardRepsBenchmark(within, false, non_ex, np.asarray(starts))
