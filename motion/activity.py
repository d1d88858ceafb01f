"""Per-minute steps, activity and wear from one raw accelerometer: the steps/wear entry point.

Method: composition of :mod:`steps` (counted steps, placement-free), :mod:`wear` (van Hees 2013 non-wear)
and ENMO (Euclidean norm minus one g, negative values set to zero; van Hees et al. 2013) per
minute. A minute is active when its ENMO reaches the moderate-intensity cut-point of the
placement (Hildebrand et al. 2014, Med Sci Sports Exerc 46(9): wrist 100.6 mg, hip 69.1 mg) or
its cadence reaches 100 steps/min (Tudor-Locke et al. 2018, Br J Sports Med 52(12)).
Zero is not missing: a worn minute without steps has 0 steps; a minute not worn, without data
or without a wear decision has NaN steps and is not active.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from .recording import GRAVITY, AccRecording
from .steps import DEFAULT_STEPS, StepParams, count_steps
from .wear import DEFAULT_WEAR, WearParams, detect_wear

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class ActivityParams:
    """Parameters of :func:`minute_activity`."""

    steps: StepParams = DEFAULT_STEPS
    wear: WearParams = DEFAULT_WEAR
    active_enmo_mg: dict[str, float] = field(
        default_factory=lambda: {"wrist": 100.6, "hip": 69.1, "foot": 100.6})
    active_steps_per_min: float = 100.0
    min_minute_coverage: float = 0.5  # share of a minute with samples for it to count


DEFAULT_ACTIVITY = ActivityParams()


@dataclass(frozen=True)
class MinuteActivity:
    """One row per minute (epoch seconds, aligned to whole minutes)."""

    minute_start_s: FloatArray
    worn: BoolArray  # worn and decided
    valid: BoolArray  # enough data and a wear decision: the minute is a measurement
    steps: FloatArray  # NaN where not valid or not worn
    active: BoolArray
    enmo_mg: FloatArray  # NaN where no data

    @property
    def wear_minutes(self) -> int:
        return int(np.count_nonzero(self.worn))

    @property
    def active_minutes(self) -> int:
        return int(np.count_nonzero(self.active))

    @property
    def total_steps(self) -> float:
        """Sum over worn minutes (NaN when no minute was worn)."""
        s = self.steps[self.worn]
        return float(s.sum()) if s.size else float("nan")


def minute_activity(rec: AccRecording, placement: str = "wrist",
                    params: ActivityParams = DEFAULT_ACTIVITY) -> MinuteActivity:
    """Steps, active flag, ENMO and wear for every minute covered by ``rec``.

    ``placement`` only chooses the ENMO cut-point; steps are counted without it."""
    t = rec.t
    m0 = np.floor(t[0] / 60.0) * 60.0
    mi = np.floor((t - m0) / 60.0).astype(np.intp)
    nm = int(mi[-1]) + 1
    minutes = m0 + 60.0 * np.arange(nm)
    a = rec.acc.T
    enmo = np.maximum(np.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2]) / GRAVITY - 1.0, 0.0) * 1000.0
    cnt = np.bincount(mi, minlength=nm).astype(np.float64)
    enmo_m = np.where(cnt > 0, np.bincount(mi, enmo, nm) / np.maximum(cnt, 1.0), np.nan)
    coverage = cnt / (60.0 * rec.rate_hz)

    st = count_steps(rec, params.steps)
    si = np.floor((st.slot_start_s - m0) / 60.0).astype(np.intp)
    ok = (si >= 0) & (si < nm)
    steps_m = np.bincount(si[ok], st.steps[ok], nm)

    worn, decided = detect_wear(rec, params.wear).minutes(minutes)
    valid = decided & (coverage >= params.min_minute_coverage)
    worn = worn & valid
    steps_out = np.where(worn, steps_m, np.nan)
    thr = params.active_enmo_mg.get(placement, params.active_enmo_mg["wrist"])
    active = worn & ((np.nan_to_num(enmo_m) >= thr) | (steps_m >= params.active_steps_per_min))
    return MinuteActivity(minutes, worn, valid, steps_out, active, enmo_m)
