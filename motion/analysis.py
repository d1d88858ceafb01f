"""Entry point: exercise sets, repetitions and range of motion of one IMU recording.

Method: composition of :mod:`fusion` (gyroscope bias from rest phases), :mod:`reps` (the
generic counter: sets and repetitions of any exercise from the dominant rotation) and
:mod:`rom` (ROM per rep, session summary); recordings with gaps are split and each contiguous
part is analysed on its own. The kinematic model of a prescribed exercise (:mod:`exercises`)
only turns segment rotation into a joint angle and bounds its plausible range; an exercise
without a model is counted the same way and its ROM is reported as segment rotation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from .exercises import Exercise, ExerciseSpec, model_for
from .fusion import DEFAULT_FUSION, FusionParams, estimate_orientation
from .recording import ImuRecording, contiguous_segments
from .reps import DEFAULT_REPS, Rep, RepParams, detect_sets
from .rom import RomSummary, summarize_rom

FloatArray = NDArray[np.float64]

JOINT_ANGLE = "joint_angle"  # ROM is the modelled joint's angle (segment rotation x gain)
SEGMENT_ROTATION = "segment_rotation"  # ROM is the IMU segment's rotation about the movement axis


@dataclass(frozen=True)
class AnalysisParams:
    """Parameters of :func:`analyze_exercise`."""

    fusion: FusionParams = DEFAULT_FUSION
    reps: RepParams = DEFAULT_REPS
    min_segment_s: float = 5.0  # contiguous parts shorter than this are not analysed
    fusion_rate_hz: float = 25.0  # the fusion runs on block means at about this rate
    max_segment_rotation_deg: float = 200.0  # beyond any single-segment physiological range
    plausible_margin: float = 1.3  # modelled joints: up to this x the upper typical ROM


DEFAULT_ANALYSIS = AnalysisParams()


@dataclass(frozen=True)
class ExerciseSet:
    """One detected set. Rep ROMs are in degrees of ``rom_kind``."""

    exercise: Exercise
    start_s: float
    end_s: float
    reps: tuple[Rep, ...]
    axis: FloatArray = field(repr=False)  # movement axis in the sensor frame
    rom: RomSummary
    rom_kind: str = SEGMENT_ROTATION
    rom_plausible: bool = True  # False: median ROM outside the physiological range
    period_s: float = float("nan")  # rep cycle from the autocorrelation

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
    """Everything found in a recording for one exercise (prescribed or not)."""

    exercise: Exercise  # ``other`` for a name without a kinematic model
    sets: tuple[ExerciseSet, ...]
    rom: RomSummary  # over all reps of the session
    analysed_s: float  # duration of the contiguous parts that were analysed
    gaps: tuple[tuple[float, float], ...]  # (last sample before, first sample after) each gap
    skipped: tuple[tuple[float, float], ...]  # contiguous parts too short to analyse
    name: str = ""  # the exercise name as given
    rom_kind: str = SEGMENT_ROTATION

    @property
    def n_reps(self) -> int:
        return sum(s.count for s in self.sets)

    @property
    def reps(self) -> tuple[Rep, ...]:
        return tuple(r for s in self.sets for r in s.reps)


def analyze_exercise(rec: ImuRecording, exercise: Exercise | str | None = None,
                     params: AnalysisParams = DEFAULT_ANALYSIS) -> ExerciseAnalysis:
    """Sets, reps (count, timing, tempo, partial reps, pauses) and ROM in ``rec``.

    ``exercise`` may be any name (or None): with a kinematic model, ROM is the joint angle;
    without, the same counter runs and ROM is segment rotation. ``rec`` may hold
    non-exercise motion between sets; gaps longer than ``params.fusion.max_gap_s`` split the
    analysis.
    """
    name = "" if exercise is None else str(getattr(exercise, "value", exercise))
    spec = model_for(name)
    label = spec.exercise if spec is not None else Exercise.OTHER
    kind = JOINT_ANGLE if spec is not None else SEGMENT_ROTATION
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
        sets.extend(_analyse_part(part, label, spec, params))
    all_reps = [r for s in sets for r in s.reps]
    rom = summarize_rom([r.rom_deg for r in all_reps], [r.partial for r in all_reps])
    return ExerciseAnalysis(label, tuple(sets), rom, analysed, gaps, tuple(skipped), name, kind)


def _bias_and_vertical(rec: ImuRecording, params: AnalysisParams) -> tuple[FloatArray, FloatArray]:
    """Gyroscope bias and the vertical in the sensor frame (N, 3) from the fusion, run on block
    means at about ``fusion_rate_hz``: the counter needs the vertical only at its 10 Hz block
    rate and the bias only from rest phases, so a lower rate loses nothing it uses."""
    k = max(int(rec.rate_hz // params.fusion_rate_hz), 1)
    n = (len(rec) // k) * k
    if k == 1 or n < 3 * k:
        ori = estimate_orientation(rec, params.fusion)
        return ori.gyr_bias, ori.up
    ori = estimate_orientation(rec.block_means(k), params.fusion)
    # each block's vertical for its k samples, the last one also for the samples left over
    times = np.full(n // k, k)
    times[-1] += len(rec) - n
    return ori.gyr_bias, np.repeat(ori.up, times, axis=0)


def _analyse_part(rec: ImuRecording, label: Exercise, spec: ExerciseSpec | None,
                  params: AnalysisParams) -> list[ExerciseSet]:
    gyr_bias, up = _bias_and_vertical(rec, params)
    found = detect_sets(rec.t, rec.gyr - gyr_bias, rec.acc, up, rec.rate_hz, params.reps)
    gain = spec.joint_gain if spec is not None else 1.0
    limit = (params.plausible_margin * spec.rom_range_deg[1] if spec is not None
             else params.max_segment_rotation_deg)
    out: list[ExerciseSet] = []
    for st in found:
        reps = tuple(Rep(r.start_s, r.peak_s, r.end_s, gain * r.rom_deg, r.partial, r.paused_before, r.held)
                     for r in st.reps)
        summary = summarize_rom([r.rom_deg for r in reps], [r.partial for r in reps])
        out.append(ExerciseSet(label, reps[0].start_s, reps[-1].end_s, reps, st.axis, summary,
                               JOINT_ANGLE if spec is not None else SEGMENT_ROTATION,
                               bool(0.0 < summary.median_deg <= limit), st.period_s))
    return out
