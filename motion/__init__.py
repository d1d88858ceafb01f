"""Signal processing for Remote Therapeutic Monitoring: pure, typed functions on numpy arrays.

Entry points other parts call:

- :func:`analyze_exercise` -- sets, repetitions (count, timing, tempo, partial reps, pauses)
  and range of motion per rep for one IMU recording and a prescribed exercise;
- :func:`minute_activity` -- per-minute steps, active minutes, ENMO and wear from a raw
  accelerometer; :func:`device_steps` -- vendor step counts passed through with their intervals;
- :func:`offset_table` -- a checked time-zone history as UTC offsets, for patient-local dates.

Synthetic recordings with exact truth come from :mod:`simulation.synth`; accuracy checks on real
recordings live in :mod:`tools.validation`.

See ``docs/signal-processing.md`` for methods, parameters, citations and measured accuracy.
"""

from rtm.localtime import local_day_index

from .activity import ActivityParams, MinuteActivity, minute_activity
from .analysis import AnalysisParams, ExerciseAnalysis, ExerciseSet, analyze_exercise
from .daydata import offset_table
from .errors import (
    DatasetUnavailableError,
    EmptyInputError,
    GapError,
    NonFiniteSampleError,
    NonMonotonicTimestampError,
    SampleRateError,
    SaturatedSignalError,
    ShapeError,
    SignalInputError,
    TimeZoneHistoryError,
    TooFewSamplesError,
)
from .exercises import MODELLED_EXERCISES, Exercise, ExerciseSpec, spec_for
from .fusion import FusionParams, OrientationResult, estimate_orientation
from .gait import StrideParams, StrideResult, detect_strides
from .recording import AccRecording, ImuRecording, ValidationParams, contiguous_segments, drop_nonfinite
from .reps import Rep, RepParams
from .rom import RomSummary, summarize_rom
from .steps import DeviceSteps, StepParams, StepResult, count_steps, device_steps
from .wear import WearParams, WearResult, detect_wear

__all__ = [
    "MODELLED_EXERCISES",
    "AccRecording",
    "ActivityParams",
    "AnalysisParams",
    "DatasetUnavailableError",
    "DeviceSteps",
    "EmptyInputError",
    "Exercise",
    "ExerciseAnalysis",
    "ExerciseSet",
    "ExerciseSpec",
    "FusionParams",
    "GapError",
    "ImuRecording",
    "MinuteActivity",
    "NonFiniteSampleError",
    "NonMonotonicTimestampError",
    "OrientationResult",
    "Rep",
    "RepParams",
    "RomSummary",
    "SampleRateError",
    "SaturatedSignalError",
    "ShapeError",
    "SignalInputError",
    "StepParams",
    "StepResult",
    "StrideParams",
    "StrideResult",
    "TimeZoneHistoryError",
    "TooFewSamplesError",
    "ValidationParams",
    "WearParams",
    "WearResult",
    "analyze_exercise",
    "contiguous_segments",
    "count_steps",
    "detect_strides",
    "detect_wear",
    "device_steps",
    "drop_nonfinite",
    "estimate_orientation",
    "local_day_index",
    "minute_activity",
    "offset_table",
    "spec_for",
    "summarize_rom",
]
