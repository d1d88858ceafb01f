"""The flags' vocabulary and the plain data the rules work on (dataclasses; no database here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    ADHERENCE_FALLING = "adherence_falling"
    NO_DATA = "no_data"
    REPS_BELOW_DOSE = "reps_below_dose"
    ROM_TREND = "rom_trend"  # stalled or regressing
    ROM_DROP = "rom_drop"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3}


class State(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Resolution(StrEnum):
    CLEARED = "cleared"  # re-evaluation found the condition gone
    MANUAL = "manual"  # a person resolved it
    NOT_MONITORED = "not_monitored"  # no active episode any more (discharged)


class Outcome(StrEnum):
    RAISE = "raise"  # the condition holds
    CLEAR = "clear"  # the condition demonstrably does not hold
    UNKNOWN = "unknown"  # not enough data to say either way: leave any stored flag as it is
    NOT_MONITORED = "not_monitored"


Evidence = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Kind
    outcome: Outcome
    evidence: Evidence
    severity: Severity | None = None

    def __post_init__(self) -> None:
        if (self.outcome is Outcome.RAISE) != (self.severity is not None):
            raise ValueError("a raise verdict, and only a raise verdict, carries a severity")


# ------------------------------------------------------------------------------ facts -----------


@dataclass(frozen=True, slots=True)
class Prescription:
    exercise: str
    effective_from: date
    sessions_per_week: int
    sets: int | None = None
    reps: int | None = None
    target_rom_deg: float | None = None

    @property
    def dose(self) -> int | None:
        return self.sets * self.reps if self.sets and self.reps else None


@dataclass(frozen=True, slots=True)
class Session:
    """One home-exercise session of one exercise: its marker's id, or the exercise and local date."""

    key: str
    exercise: str | None
    local_date: date
    start: datetime
    full_reps: int
    rom_deg: float | None  # median ROM of the full repetitions; None below the minimum count
    rom_reps: int  # how many repetitions the ROM value summarises
    complete: bool  # ended with results stored, or its local day is over: it can be judged
    marker_dose: int | None = None  # prescribed_sets * prescribed_reps from the session marker


@dataclass(frozen=True, slots=True)
class PatientFacts:
    patient_id: str
    clinic_id: str
    today: date  # patient-local date at as_of
    episode_id: str | None = None  # the active episode; None: not monitored
    monitoring_start: date | None = None
    prescriptions: tuple[Prescription, ...] = ()
    data_days: frozenset[date] = frozenset()  # within the lookback
    exercise_days: frozenset[date] = frozenset()
    last_data_day: date | None = None  # on or before today, however long ago
    sessions: tuple[Session, ...] = ()  # ordered by start

    def plan_on(self, day: date) -> dict[str, Prescription]:
        """The prescription in force per exercise on a local date (discontinued ones left out)."""
        current: dict[str, Prescription] = {}
        for p in sorted(self.prescriptions, key=lambda p: (p.exercise, p.effective_from)):
            if p.effective_from <= day:
                current[p.exercise] = p
        return {e: p for e, p in current.items() if p.sessions_per_week > 0}


# ------------------------------------------------------------------------------ stored flags ----


@dataclass(frozen=True, slots=True)
class StoredFlag:
    flag_id: int
    patient_id: str
    kind: Kind
    severity: Severity
    state: State
    evidence: Evidence
    raised_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_severity: Severity | None = None
    resolved_at: datetime | None = None
    resolution: Resolution | None = None
    resolved_severity: Severity | None = None
    condition_cleared_at: datetime | None = None


@dataclass(slots=True)
class FlagSummary:
    """What one evaluation did. Counts and flag ids only: no patient data."""

    patients: int = 0  # asked for and found
    monitored: int = 0  # with an active episode
    raised: int = 0
    reopened: int = 0
    updated: int = 0  # evidence, severity or state changed
    realerted: int = 0  # acknowledged flags that went back to open because severity worsened
    unchanged: int = 0
    resolved: int = 0
    suppressed: int = 0  # manually resolved, condition persisting at no worse severity
    by_kind: dict[str, int] = field(default_factory=dict)  # live flags after evaluation, per kind
    changed_flag_ids: list[int] = field(default_factory=list)

    def add(self, other: FlagSummary) -> None:
        for name in ("patients", "monitored", "raised", "reopened", "updated", "realerted", "unchanged",
                     "resolved", "suppressed"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.by_kind.items():
            self.by_kind[k] = self.by_kind.get(k, 0) + v
        self.changed_flag_ids.extend(other.changed_flag_ids)
