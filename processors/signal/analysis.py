"""Entry point: exercise sets, repetitions and range of motion of one IMU recording.

Method: composition of :mod:`fusion` (orientation), :mod:`reps` (sets and repetitions) and
:mod:`rom` (joint angle, ROM per rep, session summary); recordings with gaps are split and each
contiguous part is analysed on its own (orientation cannot be carried across missing data).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from .exercises import Exercise, ExerciseSpec, spec_for
from .fusion import DEFAULT_FUSION, FusionParams, estimate_orientation
from .recording import ImuRecording, contiguous_segments
from .reps import (
    DEFAULT_REPS,
    Rep,
    RepParams,
    bout_angle,
    detect_bouts,
    detect_reps,
    impact_signal,
)
from .rom import RomSummary, summarize_rom

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class AnalysisParams:
    """Parameters of :func:`analyze_exercise`."""

    fusion: FusionParams = DEFAULT_FUSION
    reps: RepParams = DEFAULT_REPS
    min_segment_s: float = 5.0  # contiguous parts shorter than this are not analysed


DEFAULT_ANALYSIS = AnalysisParams()


@dataclass(frozen=True)
class ExerciseSet:
    """One detected set. Rep ROMs are joint angles in degrees (segment angle x joint gain)."""

    exercise: Exercise
    start_s: float
    end_s: float
    reps: tuple[Rep, ...]
    axis: FloatArray = field(repr=False)  # main joint axis in the sensor frame
    rom: RomSummary

    @property
    def count(self) -> int:
        return len(self.reps)

    @property
    def n_partial(self) -> int:
        return sum(r.partial for r in self.reps)

    @property
    def n_pauses(self) -> int:
        return sum(r.paused_before or r.held for r in self.reps)

    @property
    def reps_per_min(self) -> float:
        """Tempo: repetitions per minute of set duration."""
        span = self.end_s - self.start_s
        return 60.0 * self.count / span if span > 0 else float("nan")

    @property
    def mean_rep_s(self) -> float:
        return float(np.mean([r.duration_s for r in self.reps])) if self.reps else float("nan")


@dataclass(frozen=True)
class ExerciseAnalysis:
    """Everything found in a recording for one prescribed exercise."""

    exercise: Exercise
    sets: tuple[ExerciseSet, ...]
    rom: RomSummary  # over all reps of the session
    analysed_s: float  # duration of the contiguous parts that were analysed
    gaps: tuple[tuple[float, float], ...]  # (last sample before, first sample after) each gap
    skipped: tuple[tuple[float, float], ...]  # contiguous parts too short to analyse

    @property
    def n_reps(self) -> int:
        return sum(s.count for s in self.sets)

    @property
    def reps(self) -> tuple[Rep, ...]:
        return tuple(r for s in self.sets for r in s.reps)


def analyze_exercise(rec: ImuRecording, exercise: Exercise | str,
                     params: AnalysisParams = DEFAULT_ANALYSIS) -> ExerciseAnalysis:
    """Sets, reps (count, timing, tempo, partial reps, pauses) and ROM of ``exercise`` in ``rec``.

    ``rec`` may hold non-exercise motion between sets; gaps longer than
    ``params.fusion.max_gap_s`` split the analysis.
    """
    spec = spec_for(exercise)
    segments = contiguous_segments(rec.t, params.fusion.max_gap_s)
    gaps = tuple((float(rec.t[a - 1]), float(rec.t[a])) for a, _ in segments[1:])
    sets: list[ExerciseSet] = []
    skipped: list[tuple[float, float]] = []
    analysed = 0.0
    for a, b in segments:
        part = rec if (a, b) == (0, len(rec)) else rec.slice(a, b)
        duration = float(part.t[-1] - part.t[0])
        if b - a < 3 or duration < params.min_segment_s:
            skipped.append((float(rec.t[a]), float(rec.t[b - 1])))
            continue
        analysed += duration
        sets.extend(_analyse_part(part, spec, params))
    all_reps = [r for s in sets for r in s.reps]
    rom = summarize_rom([r.rom_deg for r in all_reps], [r.partial for r in all_reps])
    return ExerciseAnalysis(spec.exercise, tuple(sets), rom, analysed, gaps, tuple(skipped))


def _analyse_part(rec: ImuRecording, spec: ExerciseSpec, params: AnalysisParams) -> list[ExerciseSet]:
    gain = spec.joint_gain
    ori = estimate_orientation(rec, params.fusion)
    gyr = rec.gyr - ori.gyr_bias
    out: list[ExerciseSet] = []
    impact = impact_signal(rec.acc, rec.rate_hz, params.reps)
    for bout in detect_bouts(rec.t, gyr, impact, ori.up, rec.rate_hz, params.reps):
        det = detect_reps(rec.t[bout.start:bout.stop], bout_angle(ori.up, bout), params.reps,
                          impact[bout.start:bout.stop])
        for group in det.sets:
            full = [r.rom_deg for r in group if not r.partial]
            typical = gain * float(np.median(full)) if full else 0.0
            if typical < params.reps.min_typical_rom_frac * spec.rom_range_deg[0]:
                continue
            reps = tuple(Rep(r.start_s, r.peak_s, r.end_s, r.rom_deg * gain, r.partial,
                             r.paused_before, r.held) for r in group)
            out.append(ExerciseSet(spec.exercise, reps[0].start_s, reps[-1].end_s, reps, bout.axis,
                                   summarize_rom([r.rom_deg for r in reps],
                                                 [r.partial for r in reps])))
    return out
