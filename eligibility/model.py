"""What the engine takes in and gives back: plain frozen dataclasses, no database, no I/O."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

ResultKind = Literal["setup", "supply", "management"]
Status = Literal["provisional", "final"]

T = TypeVar("T")


def fast_init(cls: type[T]) -> type[T]:
    """Give a frozen, slotted dataclass a faster `__init__`: the generated one sets every field
    through `object.__setattr__` (the frozen guard's way round), about four times the cost of a
    plain assignment; this one writes each slot through its descriptor. Same parameters and
    defaults, and the instance is just as frozen afterwards. The engine builds hundreds of these
    per patient (a Result has 29 fields), so the difference is a visible share of a recompute."""
    names, params = [], []
    env: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.default_factory is not MISSING or not f.init:
            raise TypeError(f"{cls.__name__}.{f.name}: fast_init takes plain defaults only")
        names.append(f.name)
        env[f"_set_{f.name}"] = cls.__dict__[f.name].__set__  # the slot's member descriptor
        if f.default is MISSING:
            params.append(f.name)
        else:
            env[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
    body = "".join(f"\n    _set_{n}(self, {n})" for n in names) or "\n    pass"
    exec(f"def __init__(self, {', '.join(params)}):{body}", env)
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign]
    return cls

# ------------------------------------------------------------------------------ inputs ----------


@fast_init
@dataclass(frozen=True, slots=True)
class Episode:
    episode_id: str
    patient_id: str
    clinic_id: str
    payer_policy: str
    monitoring_category: str
    discipline: str
    billing_practitioner_id: str | None
    start_date: date
    setup_date: date | None = None
    setup_documented_at: datetime | None = None
    consent_at: datetime | None = None
    plan_of_care_start: date | None = None
    plan_of_care_end: date | None = None
    discharge_date: date | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class Assignment:
    device_id: str
    episode_id: str
    model_id: str
    qualifying_model: bool
    valid_from: datetime
    valid_to: datetime | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class DayFact:
    """One row of data_day_facts: a device's data on a patient-local date.

    `refs` are the records that made the day (opaque to the engine: passed through to the
    explanation untouched, as parsed JSON or as raw JSON text from the database).
    """

    local_date: date
    device_id: str
    qualifying: bool
    refs: object = ()


@fast_init
@dataclass(frozen=True, slots=True)
class TimeEntry:
    entry_id: str
    episode_id: str
    practitioner_id: str
    practitioner_role: str
    discipline: str | None
    activity: str
    channel: str
    started_at: datetime
    minutes: Decimal
    service_date: date | None = None
    supersedes: str | None = None
    recorded_at: datetime | None = None
    voided: bool = False
    other_service: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class RpmPeriod:
    """RPM billed for the patient over [start, end] (from the billing system)."""

    start: date
    end: date
    practitioner_id: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class PatientInputs:
    patient_id: str
    episodes: tuple[Episode, ...]
    assignments: tuple[Assignment, ...] = ()
    facts: tuple[DayFact, ...] = ()
    entries: tuple[TimeEntry, ...] = ()
    timezones: tuple[tuple[datetime, str], ...] = ()
    rpm_periods: tuple[RpmPeriod, ...] = ()


# ------------------------------------------------------------------------------ results ---------


@fast_init
@dataclass(frozen=True, slots=True)
class CodeLine:
    """One claim line. `earned_on` is the day the line (its last unit, and its assistant modifier)
    was earned; `service_date` is never earlier (the engine refuses a line dated before it)."""

    code: str
    units: int
    modifiers: tuple[str, ...]
    unit_price: Decimal
    service_date: date | None = None
    earned_on: date | None = None
    why_dated: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class Gate:
    name: str
    passed: bool
    detail: str


@fast_init
@dataclass(frozen=True, slots=True)
class CountedDay:
    local_date: date
    devices: tuple[str, ...]
    refs: tuple[object, ...]
    # The day as canonical explanation JSON when the engine could write it in passing (one device,
    # records as raw JSON text); empty otherwise. Derived from the fields above: not compared.
    json: bytes = field(default=b"", compare=False, repr=False)


@fast_init
@dataclass(frozen=True, slots=True)
class ExcludedDay:
    local_date: date
    device_id: str
    why: str


@fast_init
@dataclass(frozen=True, slots=True)
class CountedEntry:
    entry_id: str
    local_date: date
    practitioner_id: str
    practitioner_role: str
    channel: str
    activity: str
    minutes: Decimal
    interactive: bool


@fast_init
@dataclass(frozen=True, slots=True)
class ExcludedEntry:
    entry_id: str
    why: str


@fast_init
@dataclass(frozen=True, slots=True)
class Anchor:
    rule: str
    date: date
    detail: str


@fast_init
@dataclass(frozen=True, slots=True)
class Result:
    """One answer: set-up for an episode, supply for a device period, management for a month."""

    key: str
    kind: ResultKind
    patient_id: str
    episode_id: str
    clinic_id: str
    policy_id: str
    policy_version: str
    period_index: int | None
    period_start: date
    period_end: date
    lines: tuple[CodeLine, ...]
    service_date: date | None
    reached_on: date | None
    status: Status
    final_on: date
    early_release: bool
    reason: str
    gates: tuple[Gate, ...]
    billing_practitioner_id: str | None = None
    data_days: int | None = None
    cut_by_discharge: bool = False
    days: tuple[CountedDay, ...] = ()
    excluded_days: tuple[ExcludedDay, ...] = ()
    minutes: Decimal | None = None
    assistant_minutes: Decimal | None = None
    interactive: bool | None = None
    entries: tuple[CountedEntry, ...] = ()
    excluded_entries: tuple[ExcludedEntry, ...] = ()
    # Where the device periods start and why (set-up and supply), per policy `supply.anchor`.
    anchor: Anchor | None = None

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(line.code for line in self.lines)

    @property
    def gates_passed(self) -> bool:
        return all(g.passed for g in self.gates)

    def gate(self, name: str) -> Gate:
        for g in self.gates:
            if g.name == name:
                return g
        raise KeyError(name)
