"""Step-counter evaluation: real walks (oxford_steps) beside a naive counter, and synthetic courses.

MAPE is the mean over recordings of |counted - reference| / reference. The naive counter is the
common baseline: peaks of the 0.5-3 Hz band-passed acceleration magnitude (4th-order Butterworth,
zero phase) higher than 0.5 m/s² (above sensor noise and standing sway) and at least 0.25 s apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from motion.recording import AccRecording
from motion.steps import DEFAULT_STEPS, StepParams, count_steps
from simulation import synth_walks
from simulation.synth import SensorModel

from .datasets import OxfordWalk, load_oxford_steps

FloatArray = NDArray[np.float64]

NAIVE_BAND_HZ = (0.5, 3.0)
NAIVE_MIN_HEIGHT_MS2 = 0.5
NAIVE_MIN_DISTANCE_S = 0.25
NAIVE_GRID_HZ = 50.0


def naive_steps(rec: AccRecording) -> int:
    """Peak count on the band-passed magnitude (see module doc)."""
    grid = np.arange(rec.t[0], rec.t[-1], 1.0 / NAIVE_GRID_HZ)
    mag = np.interp(grid, rec.t, np.linalg.norm(rec.acc, axis=1))
    sos = signal.butter(4, NAIVE_BAND_HZ, btype="bandpass", fs=NAIVE_GRID_HZ, output="sos")
    y = signal.sosfiltfilt(sos, mag - mag.mean())
    peaks, _ = signal.find_peaks(y, height=NAIVE_MIN_HEIGHT_MS2, distance=round(NAIVE_MIN_DISTANCE_S * NAIVE_GRID_HZ))
    return int(peaks.size)


@dataclass(frozen=True)
class RealStepsResult:
    """Per walk of oxford_steps: carrying position, walker, reference, counted and naive steps."""

    names: tuple[str, ...]
    carried: tuple[str, ...]
    walkers: tuple[str, ...]
    reference: FloatArray
    counted: FloatArray
    naive: FloatArray
    dropped_edges: int = 0

    def _mape(self, est: FloatArray, sel: NDArray[np.bool_] | None = None) -> float:
        err = np.abs(est - self.reference) / self.reference * 100.0
        return float(np.mean(err if sel is None else err[sel]))

    @property
    def mape_pct(self) -> float:
        return self._mape(self.counted)

    @property
    def baseline_mape_pct(self) -> float:
        return self._mape(self.naive)

    def by_carried(self) -> dict[str, tuple[float, float, int]]:
        """Carrying position -> (MAPE, naive MAPE, walks)."""
        c = np.asarray(self.carried)
        return {k: (self._mape(self.counted, c == k), self._mape(self.naive, c == k), int((c == k).sum()))
                for k in dict.fromkeys(self.carried)}

    def by_walker(self) -> dict[str, float]:
        w = np.asarray(self.walkers)
        return {k: self._mape(self.counted, w == k) for k in dict.fromkeys(self.walkers)}


def slowed(walk: OxfordWalk, rng: np.random.Generator, factor: tuple[float, float] = (1.5, 2.2),
           drift: float = 0.1) -> OxfordWalk:
    """The walk played ``factor`` times slower (about 50-75 steps/min) with a smoothly drifting
    tempo (``drift`` relative SD, below 0.3 Hz), its movement (the part above 0.3 Hz) scaled by
    factor^-1.5 as slower gait is gentler: real waveforms for slow, irregular gait."""
    slow = float(rng.uniform(*factor))
    t = walk.t
    fs = 1.0 / float(np.median(np.diff(t)))
    sos = signal.butter(2, 0.3, fs=fs, output="sos")
    mod = signal.sosfiltfilt(sos, rng.standard_normal(t.size))
    mod = np.clip(1.0 + drift * mod / mod.std(), 0.5, 1.5)
    tw = np.cumsum(np.diff(t, prepend=t[0] - 1.0 / fs) * slow * mod)
    grav = signal.sosfiltfilt(sos, walk.acc, axis=0)
    acc = grav + (walk.acc - grav) / slow**1.5
    return OxfordWalk(walk.name, walk.carried, walk.walker, tw, acc, np.interp(walk.step_times, t, tw),
                      walk.dropped_edges)


def evaluate_steps_real(root: Path | None = None, params: StepParams = DEFAULT_STEPS,
                        slow_seed: int | None = None) -> RealStepsResult:
    """The counter and the naive counter on every oxford_steps walk (nothing is fitted to them);
    with ``slow_seed``, on the walks slowed down by :func:`slowed`."""
    walks = load_oxford_steps(root)
    if slow_seed is not None:
        rng = np.random.default_rng(slow_seed)
        walks = [slowed(w, rng) for w in walks]
    counted, naive = [], []
    for w in walks:
        rec = w.recording()
        counted.append(count_steps(rec, params).total)
        naive.append(naive_steps(rec))
    return RealStepsResult(tuple(w.name for w in walks), tuple(w.carried for w in walks),
                           tuple(w.walker for w in walks), np.array([w.step_times.size for w in walks], float),
                           np.asarray(counted), np.asarray(naive, float), sum(w.dropped_edges for w in walks))


@dataclass(frozen=True)
class CourseBenchmark:
    """Synthetic courses (bouts of 4-40 steps, 40-125 steps/min, U-turns, pauses) per placement."""

    errors_pct: dict[str, FloatArray] = field(repr=False)
    false_in_pauses: int  # counted steps inside standing/sitting/fidgeting blocks (1 s from bouts)
    still_steps: int  # counted steps in recordings of standing, sitting and fidgeting only
    still_s: float

    @property
    def mape_pct(self) -> float:
        return float(np.mean(np.abs(np.concatenate(list(self.errors_pct.values())))))


def evaluate_courses(seed: int = 20260110, per_placement: int = 4, still_s: float = 300.0,
                     params: StepParams = DEFAULT_STEPS) -> CourseBenchmark:
    """Courses for every placement at 25-100 Hz, plus ``still_s`` of pauses only per placement."""
    rng = np.random.default_rng(seed)
    errs: dict[str, list[float]] = {}
    false = still = 0
    for pl in synth_walks.WALK_PLACEMENTS:
        for _ in range(per_placement):
            sensor = SensorModel(rate_hz=float(rng.choice((25.0, 50.0, 100.0))))
            c = synth_walks.simulate_course(rng, pl, sensor=sensor)
            est = count_steps(c.recording, params).step_times_s
            errs.setdefault(pl, []).append(100.0 * (est.size - c.step_times.size) / c.step_times.size)
            for b in c.blocks:
                if b.kind != "walk":
                    false += int(np.count_nonzero((est > b.start_s + 1.0) & (est < b.end_s - 1.0)))
        s = synth_walks.simulate_still(rng, still_s, sensor=SensorModel(rate_hz=50.0), placement=pl)
        still += int(count_steps(s.recording, params).total)
    return CourseBenchmark({k: np.asarray(v) for k, v in errs.items()}, false, still,
                           still_s * len(synth_walks.WALK_PLACEMENTS))
