"""The eligibility engine: pure functions from one patient's stored facts to billing answers.

Nothing here touches the database or the clock: `as_of` is an argument, every threshold comes
from the payer policy, and the same inputs always give the same results in the same order.

Three answers per episode of care (the rules in docs/eligibility.md):
- set-up (98975), once per episode, from the first device period's data days;
- device supply, per 30-day device period anchored per policy and cut at discharge;
- treatment management, per calendar month, from therapist time entries.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from eligibility.model import (
    Anchor,
    Assignment,
    CodeLine,
    CountedDay,
    CountedEntry,
    DayFact,
    Episode,
    ExcludedDay,
    ExcludedEntry,
    Gate,
    PatientInputs,
    Result,
    ResultKind,
    RpmPeriod,
    Status,
    TimeEntry,
    fast_init,
)
from eligibility.policy import Policy
from rtm.localtime import TzHistory

_CENT = Decimal("0.01")
_US_PER_MINUTE = 60_000_000

# ------------------------------------------------------------------------------ wording ---------


def _days(n: int) -> str:
    return f"{n} data day" if n == 1 else f"{n} data days"


def fmt_minutes(m: Decimal) -> str:
    text = f"{m.quantize(_CENT):f}".rstrip("0").rstrip(".")
    return f"{text} minute" if text == "1" else f"{text} minutes"


def _more(n: Decimal | int) -> str:
    text = f"{n:f}" if isinstance(n, Decimal) else str(n)
    return text.rstrip("0").rstrip(".") if "." in text else text


# ------------------------------------------------------------------------------ calendar --------


def month_start(d: date) -> date:
    return d.replace(day=1)


# The engine's small pure functions of a few dates and words are cached by value (lru_cache): a
# batch asks them the same questions for every patient whose periods share dates, and a cached
# Gate or date is immutable, so sharing it is safe. The bound keeps a long-running worker's memory flat.
_CACHE = 1 << 16


@lru_cache(maxsize=_CACHE)
def month_end(d: date) -> date:
    nxt = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
    return nxt - timedelta(days=1)


def _overlaps(a0: date, a1: date, b0: date, b1: date) -> bool:
    return a0 <= b1 and b0 <= a1


@fast_init
@dataclass(frozen=True, slots=True)
class Period:
    index: int
    start: date
    end: date
    cut_by_discharge: bool


def device_periods(
    anchor: date | None, period_days: int, discharge: date | None, as_of: date
) -> list[Period]:
    """Back-to-back periods from the anchor, never shifted or stretched; the last is cut at discharge."""
    if anchor is None:
        return []
    last = min(discharge, as_of) if discharge else as_of
    periods: list[Period] = []
    k = 0
    while (start := anchor + timedelta(days=period_days * k)) <= last:
        full_end = start + timedelta(days=period_days - 1)
        end = min(full_end, discharge) if discharge else full_end
        periods.append(Period(k, start, end, end < full_end))
        k += 1
    return periods


def calendar_months(first: date, last: date) -> list[date]:
    months: list[date] = []
    m = month_start(first)
    while m <= last:
        months.append(m)
        m = month_end(m) + timedelta(days=1)
    return months


def _status(final_on: date | None, as_of: date) -> Status:
    return "final" if final_on is not None and as_of >= final_on else "provisional"


def _final_on(end: date, policy: Policy) -> date:
    return _days_after(end, 1 + policy.status.final_after_days)


@lru_cache(maxsize=_CACHE)
def _days_after(d: date, n: int) -> date:
    return d + timedelta(days=n)


def sole_biller_gate(ep: Episode) -> Gate:
    return _sole_biller_gate(ep.billing_practitioner_id)


@lru_cache(maxsize=_CACHE)
def _sole_biller_gate(practitioner: str | None) -> Gate:
    return Gate("one_practitioner", True, f"{practitioner} is the only practitioner billing RTM here")


def _result(
    kind: ResultKind, key_suffix: str, ep: Episode, policy: Policy, as_of: date, final_on: date | None,
    gates: Sequence[Gate], sole: bool = False, **fields: Any,
) -> Result:
    """A result of one kind for an episode under a policy: its key, identity, status (final once
    `as_of` reaches `final_on`; never when there is none) and gates are filled in the same way for
    every kind; `fields` are the kind's own. `sole`: the patient's only episode, so the
    one-practitioner gate passes without comparing episodes."""
    if sole and kind != "setup":
        gates = (*gates, sole_biller_gate(ep))
    return Result(
        key=f"{kind}/{ep.episode_id}{key_suffix}",
        kind=kind,
        patient_id=ep.patient_id,
        episode_id=ep.episode_id,
        clinic_id=ep.clinic_id,
        policy_id=policy.id,
        policy_version=policy.version,
        status=_status(final_on, as_of),
        final_on=final_on or date.max,
        gates=tuple(gates),
        billing_practitioner_id=ep.billing_practitioner_id,
        **fields,
    )


# ------------------------------------------------------------------------------ data days -------


class Window(NamedTuple):
    """A device assigned to the episode, as patient-local dates (inclusive). A named tuple: the gates'
    caches take the episode's windows as their key, and a tuple hashes in C where a dataclass runs
    its generated `__hash__` in Python on every lookup."""

    device_id: str
    model_id: str
    qualifying_model: bool
    first: date
    last: date | None


@dataclass(slots=True)
class DayBook:
    counted: dict[date, CountedDay]
    excluded: list[ExcludedDay]
    consent_date: date | None
    # The first day with data from a device assigned to the episode, counted or not (excluded only
    # for consent or the plan of care): the literal anchor of the device periods.
    first_data: date | None = None
    _dates: list[date] | None = None

    def in_range(self, start: date, end: date) -> list[CountedDay]:
        if self._dates is None:  # sorted once: every period and month asks
            self._dates = sorted(self.counted)
        lo, hi = bisect_left(self._dates, start), bisect_right(self._dates, end)
        return [self.counted[d] for d in self._dates[lo:hi]]

    def count_in(self, start: date, end: date) -> tuple[int, date | None]:
        """How many counted days fall in [start, end], and the first of them (no list built)."""
        if self._dates is None:
            self._dates = sorted(self.counted)
        lo, hi = bisect_left(self._dates, start), bisect_right(self._dates, end)
        return hi - lo, (self._dates[lo] if hi > lo else None)


def episode_windows(episode_id: str, assignments: Iterable[Assignment], tzh: TzHistory) -> list[Window]:
    out = []
    for a in assignments:
        if a.episode_id != episode_id:
            continue
        last = tzh.last_local_date_before(a.valid_to) if a.valid_to else None
        out.append(Window(a.device_id, a.model_id, a.qualifying_model, tzh.local_date(a.valid_from), last))
    return sorted(out, key=lambda w: (w.first, w.device_id))


def _window_on(windows: Sequence[Window], d: date) -> Window | None:
    for w in windows:
        if w.first <= d and (w.last is None or d <= w.last):
            return w
    return None


def _in_plan_of_care(ep: Episode, d: date) -> bool:
    if ep.plan_of_care_start is None:  # missing plan: the gate fails; days are still shown
        return True
    return ep.plan_of_care_start <= d and (ep.plan_of_care_end is None or d <= ep.plan_of_care_end)


def _in_episode(ep: Episode, d: date) -> bool:
    return ep.start_date <= d and (ep.discharge_date is None or d <= ep.discharge_date)


@lru_cache(maxsize=_CACHE)
def _iso_day(d: date) -> str:
    return d.isoformat()


# Days excluded only for these reasons are still days with data: they anchor the device periods.
_ANCHORING = frozenset({"before consent", "outside the plan of care"})


def _day_exclusion(ep: Episode, policy: Policy, fact: DayFact, w: Window, consent: date | None) -> str | None:
    if not fact.qualifying:
        return "no qualifying data point"
    if not w.qualifying_model:
        return f"device model {w.model_id} is not a qualifying medical device"
    if not _in_episode(ep, fact.local_date):
        return "outside the episode of care"
    if not _in_plan_of_care(ep, fact.local_date):
        return "outside the plan of care"
    if policy.gates.consent_before_data == "exclude_days" and consent and fact.local_date < consent:
        return "before consent"
    return None


def classify_days(
    ep: Episode,
    policy: Policy,
    windows: Sequence[Window],
    facts: Iterable[DayFact],
    tzh: TzHistory,
    as_of: date,
) -> DayBook:
    """Which patient-local dates count for the episode, each with the devices and records behind it."""
    by_device: dict[str, list[Window]] = defaultdict(list)
    for w in windows:
        by_device[w.device_id].append(w)
    consent = tzh.local_date(ep.consent_at) if ep.consent_at else None
    # The common case (data inside the episode, plan and consent, one device) takes one comparison
    # of the date against these bounds; anything else gets its reason from _day_exclusion.
    lo = max(ep.start_date, ep.plan_of_care_start or date.min)
    if policy.gates.consent_before_data == "exclude_days" and consent:
        lo = max(lo, consent)
    hi = min(as_of, ep.discharge_date or date.max, ep.plan_of_care_end or date.max)
    if ep.plan_of_care_start is None:
        hi = min(as_of, ep.discharge_date or date.max)
    devices: dict[date, list[str]] = {}
    refs: dict[date, list[object]] = {}
    excluded: list[ExcludedDay] = []
    first_data: date | None = None
    rest: Iterable[DayFact] = facts
    fast_counted: dict[date, CountedDay] = {}
    if len(windows) == 1 and windows[0].qualifying_model:
        # The usual episode, one qualifying device: its facts inside every bound count without the
        # per-fact checks below, which only the others go through.
        w = windows[0]
        dev, flo = w.device_id, max(lo, w.first)
        fhi = min(hi, w.last) if w.last is not None else hi
        good: list[DayFact] = []
        others: list[DayFact] = []
        for fact in facts:
            (good if fact.device_id == dev and flo <= fact.local_date <= fhi and fact.qualifying else others).append(
                fact
            )
        head = f'","devices":{orjson.dumps([dev]).decode()},"records":['
        one_device = (dev,)
        fast = {
            f.local_date: CountedDay(
                f.local_date, one_device, (f.refs,),
                f'{{"date":"{_iso_day(f.local_date)}{head}{f.refs}]}}'.encode() if type(f.refs) is str else b"",
            )
            for f in good
        }  # fmt: skip
        if len(fast) == len(good):  # one fact per date, as the table's key guarantees
            fast_counted = fast
        else:
            for fact in good:
                devices.setdefault(fact.local_date, []).append(dev)
                refs.setdefault(fact.local_date, []).append(fact.refs)
        if good:
            first_data = min(fast)
        rest = others
    for fact in rest:
        day = fact.local_date
        if day > as_of:
            continue  # not yet happened as of the computation date
        ws = by_device.get(fact.device_id)
        if not ws:
            continue  # not this episode's device
        win = ws[0] if len(ws) == 1 else _window_on(ws, day)
        if win is None or day < win.first or (win.last is not None and day > win.last):
            continue  # not this episode's device on that date
        if lo <= day <= hi and fact.qualifying and win.qualifying_model:
            why = None
        else:
            why = _day_exclusion(ep, policy, fact, win, consent)
        if why is None or why in _ANCHORING:
            first_data = day if first_data is None or day < first_data else first_data
        if why:
            excluded.append(ExcludedDay(day, fact.device_id, why))
            continue
        if day in devices:
            devices[day].append(fact.device_id)
            refs[day].append(fact.refs)
        else:
            devices[day], refs[day] = [fact.device_id], [fact.refs]
    counted = fast_counted
    for d, devs in devices.items():
        if d in counted:  # also from another device: merged, in device order
            devs = [*counted[d].devices, *devs]
            refs[d] = [*counted[d].refs, *refs[d]]
        if len(devs) == 1:
            counted[d] = CountedDay(d, (devs[0],), (refs[d][0],))
            continue
        order = sorted(range(len(devs)), key=devs.__getitem__)
        counted[d] = CountedDay(d, tuple(devs[i] for i in order), tuple(refs[d][i] for i in order))
    # A day counted through another device needs no excuse for this one.
    kept = sorted(
        (x for x in excluded if x.local_date not in counted), key=lambda x: (x.local_date, x.device_id)
    )
    return DayBook(counted, kept, consent, first_data)


def period_anchor(ep: Episode, policy: Policy, book: DayBook) -> Anchor | None:
    """Day A of period 0 under the policy's `supply.anchor`, with the sentence an auditor reads."""
    rule = policy.supply.anchor
    first_counted = min(book.counted) if book.counted else None
    counted = f"; first counted day {first_counted}" if first_counted else "; no counted day yet"
    if rule == "setup_date":
        if ep.setup_date is None:
            return None
        return Anchor(rule, ep.setup_date, f"periods start on the set-up date {ep.setup_date}{counted}")
    if rule == "first_counted_day":
        if first_counted is None:
            return None
        return Anchor(
            rule, first_counted, f"periods start on the first counted day {first_counted} (after consent and "
            f"plan-of-care checks); first day with data {book.first_data}",
        )  # fmt: skip
    if book.first_data is None:
        return None
    return Anchor(
        rule, book.first_data, f"periods start on the first day with data from an assigned device "
        f"{book.first_data}, counted or not{counted}",
    )  # fmt: skip


# ------------------------------------------------------------------------------ gates -----------


def consent_gate(ep: Episode, policy: Policy, consent: date | None, first_counted: date | None) -> Gate:
    if ep.consent_at is None or consent is None:
        return Gate("consent", False, "no consent recorded")
    return _consent_gate(policy.gates.consent_before_data, consent, first_counted)


@lru_cache(maxsize=_CACHE)
def _consent_gate(rule: str, consent: date, first_counted: date | None) -> Gate:
    if rule == "fail" and first_counted is not None and first_counted < consent:
        return Gate(
            "consent", False, f"consent recorded on {consent} after data counted from {first_counted}"
        )
    if first_counted is None:
        return Gate("consent", True, f"consent recorded on {consent}")
    return Gate(
        "consent", True, f"consent recorded on {consent}, before the first counted day {first_counted}"
    )


def plan_of_care_gate(ep: Episode, start: date, end: date) -> Gate:
    return _plan_of_care_gate(ep.plan_of_care_start, ep.plan_of_care_end, ep.start_date, ep.discharge_date, start, end)


@lru_cache(maxsize=_CACHE)
def _plan_of_care_gate(
    poc_start: date | None, poc_end: date | None, ep_start: date, discharge: date | None, start: date, end: date
) -> Gate:
    if poc_start is None:
        return Gate("plan_of_care", False, "no plan of care recorded")
    if not _overlaps(poc_start, poc_end or date.max, start, end):
        return Gate("plan_of_care", False, f"plan of care {poc_start}..{poc_end} not active")
    if not _overlaps(ep_start, discharge or date.max, start, end):
        return Gate("plan_of_care", False, "episode of care not active")
    return Gate("plan_of_care", True, f"plan of care active from {poc_start}")


def qualifying_device_gate(windows: Sequence[Window], start: date, end: date) -> Gate:
    return _qualifying_device_gate(tuple(windows), start, end)


@lru_cache(maxsize=_CACHE)
def _qualifying_device_gate(windows: tuple[Window, ...], start: date, end: date) -> Gate:
    active = [w for w in windows if _overlaps(w.first, w.last or date.max, start, end)]
    if not active:
        return Gate("qualifying_device", False, "no device assigned to the episode")
    good = sorted({w.device_id for w in active if w.qualifying_model})
    if good:
        return Gate("qualifying_device", True, "qualifying medical device: " + ", ".join(good))
    models = ", ".join(sorted({w.model_id for w in active}))
    return Gate("qualifying_device", False, f"device model {models} is not a qualifying medical device")


def billing_practitioner_gate(ep: Episode) -> Gate:
    return _billing_practitioner_gate(ep.billing_practitioner_id)


@lru_cache(maxsize=_CACHE)
def _billing_practitioner_gate(practitioner: str | None) -> Gate:
    if not practitioner:
        return Gate("billing_practitioner", False, "no billing practitioner named on the episode")
    return Gate("billing_practitioner", True, f"billed by {practitioner}")


def rpm_gate(policy: Policy, rpm: Sequence[RpmPeriod], start: date, end: date, kind: ResultKind) -> Gate:
    return _rpm_gate(policy.gates.rpm_overlap_test, tuple(rpm), start, end, kind)


@lru_cache(maxsize=_CACHE)
def _rpm_gate(test: str, rpm: tuple[RpmPeriod, ...], start: date, end: date, kind: ResultKind) -> Gate:
    lo, hi = start, end
    if test == "month" and kind != "management":
        lo, hi = month_start(start), month_end(end)
    unit = "calendar months" if (lo, hi) != (start, end) else "period"
    for r in sorted(rpm, key=lambda r: (r.start, r.end)):
        if _overlaps(r.start, r.end, lo, hi):
            return Gate("rpm_overlap", False, f"RPM billed {r.start}..{r.end} overlaps the {unit} {lo}..{hi}")
    return Gate("rpm_overlap", True, f"no RPM billed in the {unit} {lo}..{hi}")


def _failed(gates: Sequence[Gate]) -> list[Gate]:
    return [g for g in gates if not g.passed]


def _gate_reason(gates: Sequence[Gate], reason: str) -> str:
    failed = "; ".join(f"{g.name}: {g.detail}" for g in _failed(gates))
    return f"no code, gate failed ({failed}); otherwise {reason}"


# ------------------------------------------------------------------------------ modifiers -------


def modifiers(
    policy: Policy, ep: Episode, kind: ResultKind, minutes: Decimal, assistant: Decimal
) -> tuple[str, ...]:
    out: list[str] = []
    mods = policy.modifiers
    disc = ep.discipline
    if kind in mods.discipline_on and disc in mods.discipline:
        out.append(mods.discipline[disc])
    share_exceeded = minutes > 0 and assistant * 100 > mods.assistant_share_above_percent * minutes
    if kind in mods.assistant_on and share_exceeded and disc in mods.assistant:
        out.append(mods.assistant[disc])
    return tuple(out)


def _line(
    policy: Policy, code: str, units: int, mods: tuple[str, ...], earned: date | None, dated: date | None,
    why: str,
) -> CodeLine:
    """A claim line dated per policy, but never before the day it was earned."""
    service = max(dated, earned) if dated and earned else (dated or earned)
    if service is not None and dated is not None and earned is not None and earned > dated:
        why = f"{why}; dated {earned}, not {dated}: never before the day it was earned"
    return CodeLine(code, units, mods, policy.price(code), service, earned, why)


def settled_day(steps: Sequence[tuple[date, Decimal, Decimal]], above_percent: Decimal) -> date | None:
    """The first day from which the cumulative assistant share stays above the limit for good.

    `steps` are (day, minutes, assistant minutes) in date order; a modifier decided by the month's
    share is earned only once no later entry could have undone it."""
    total, assistant, settled = Decimal(0), Decimal(0), None
    for day, minutes, helper in steps:
        total, assistant = total + minutes, assistant + helper
        above = total > 0 and assistant * 100 > above_percent * total
        settled = (settled or day) if above else None
    return settled


def _steps(entries: Iterable[CountedEntry], policy: Policy) -> list[tuple[date, Decimal, Decimal]]:
    per_day: dict[date, tuple[Decimal, Decimal]] = {}
    for e in entries:
        m, a = per_day.get(e.local_date, (Decimal(0), Decimal(0)))
        helper = e.minutes if e.practitioner_role in policy.people.assistant_roles else Decimal(0)
        per_day[e.local_date] = (m + e.minutes, a + helper)
    return [(d, m, a) for d, (m, a) in sorted(per_day.items())]


def _settled(mods: tuple[str, ...], policy: Policy, ep: Episode, counted: Iterable[CountedEntry]) -> date | None:
    """The day the assistant modifier settled, when `mods` carry it (else None, without building the
    daily steps: most lines carry no such modifier)."""
    helper = policy.modifiers.assistant.get(ep.discipline)  # type: ignore[call-overload]
    if helper is None or helper not in mods:
        return None
    return settled_day(_steps(counted, policy), policy.modifiers.assistant_share_above_percent)


def _with_modifier_day(
    earned: date | None, why: str, mods: tuple[str, ...], policy: Policy, ep: Episode, day: date | None
) -> tuple[date | None, str]:
    """A line carrying the assistant modifier is earned no earlier than the day that modifier
    settled (`day`, from `_settled`)."""
    helper = policy.modifiers.assistant.get(ep.discipline)  # type: ignore[call-overload]
    if helper is None or helper not in mods:
        return earned, why
    if day is None or earned is None or day <= earned:
        return earned, why
    share = f"above {policy.modifiers.assistant_share_above_percent}%"
    return day, f"{why}; {helper} settled on {day} (assistant share {share} from then on)"


# ------------------------------------------------------------------------------ supply ----------


def supply_code(policy: Policy, category: str, d: int) -> tuple[str | None, int | None, str]:
    """The one supply code D data days reach (and the day threshold used), or why none."""
    rule = policy.supply
    codes = rule.categories.get(category)  # type: ignore[call-overload]
    if codes is None:
        return None, None, f"{_days(d)}: no supply codes for category {category} under {policy.id}"
    long_code, short_code, short_min = codes.long_code, codes.short_code, rule.short_min_days
    if d >= rule.long_min_days:
        if policy.recognised(long_code):
            return long_code, rule.long_min_days, f"{_days(d)}: {long_code} ({rule.long_min_days}+ days)"
        return None, None, f"{_days(d)}: {long_code} is not recognised by {policy.id}"
    to_long = f"{rule.long_min_days - d} more for {long_code}"
    if short_code and short_min is not None and d >= short_min:
        if policy.recognised(short_code):
            span = f"{short_min}-{rule.long_min_days - 1} days"
            return short_code, short_min, f"{_days(d)}: {short_code} ({span}); {to_long}"
        return None, None, f"{_days(d)}: {short_code} is not recognised by {policy.id}; {to_long}"
    if short_code and short_min is not None and policy.recognised(short_code):
        return None, None, f"{_days(d)}: {short_min - d} more for {short_code}"
    return None, None, f"{_days(d)}: {to_long}"


def supply_result(
    ep: Episode,
    policy: Policy,
    period: Period,
    book: DayBook,
    windows: Sequence[Window],
    rpm: Sequence[RpmPeriod],
    anchor: Anchor | None,
    as_of: date,
    sole: bool = False,
) -> Result:
    days = book.in_range(period.start, period.end)
    d = len(days)
    first = days[0].local_date if days else None
    gates = [
        consent_gate(ep, policy, book.consent_date, first),
        plan_of_care_gate(ep, period.start, period.end),
        qualifying_device_gate(windows, period.start, period.end),
        billing_practitioner_gate(ep),
        rpm_gate(policy, rpm, period.start, period.end, "supply"),
    ]
    if period.cut_by_discharge and not policy.supply.bill_period_cut_by_discharge:
        gates.append(Gate("full_period", False, f"period cut short by discharge on {period.end}"))
    code, threshold, reason = supply_code(policy, ep.monitoring_category, d)
    reached = days[threshold - 1].local_date if code and threshold else None
    lines: tuple[CodeLine, ...] = ()
    if code and not _failed(gates):
        dated = reached if policy.supply.date_of_service == "threshold_day" else period.end
        why = f"{code} earned on {reached}, data day {threshold} of the period"
        mods = modifiers(policy, ep, "supply", Decimal(0), Decimal(0))
        lines = (_line(policy, code, 1, mods, reached, dated, why),)
    elif code or _failed(gates):
        reason = _gate_reason(gates, reason)
    service = lines[0].service_date if lines else None
    cat = policy.supply.categories.get(ep.monitoring_category)  # type: ignore[call-overload]
    early = bool(lines) and policy.supply.release_long_code_at_threshold and lines[0].code == cat.long_code
    final_on = _final_on(period.end, policy)
    return _result(
        "supply", f"/{period.index}", ep, policy, as_of, final_on, gates, sole,
        period_index=period.index,
        period_start=period.start,
        period_end=period.end,
        lines=lines,
        service_date=service,
        reached_on=reached,
        early_release=early,
        reason=reason,
        data_days=d,
        cut_by_discharge=period.cut_by_discharge,
        days=tuple(days),
        anchor=anchor,
        # Period 0 also shows what came before it: why the anchor is where it is.
        excluded_days=tuple(
            x
            for x in book.excluded
            if x.local_date <= period.end and (period.index == 0 or x.local_date >= period.start)
        ),
    )


# ------------------------------------------------------------------------------ time entries ----


def resolve_corrections(entries: Sequence[TimeEntry]) -> dict[str, str]:
    """Entries that never count, with why: voided, replaced by a correction, or a losing correction.

    Two corrections of the same entry (e.g. from two devices) would make it count twice: the one
    recorded last wins, deterministically.
    """
    out: dict[str, str] = {}
    corrections: dict[str, list[TimeEntry]] = defaultdict(list)
    for e in entries:
        if e.supersedes:
            corrections[e.supersedes].append(e)
    for target, corr in corrections.items():
        ranked = sorted(corr, key=lambda e: (e.recorded_at.isoformat() if e.recorded_at else "", e.entry_id))
        winner = ranked[-1]
        out[target] = f"superseded by correction {winner.entry_id}"
        for loser in ranked[:-1]:
            out[loser.entry_id] = f"conflicting correction of {target}; {winner.entry_id} was recorded later"
    for e in entries:
        if e.voided:
            out.setdefault(e.entry_id, "voided")
    return out


def _entry_end_us(e: TimeEntry) -> int:
    return int(e.minutes * _US_PER_MINUTE)


def remove_overlaps(entries: Sequence[TimeEntry], dropped: Mapping[str, str]) -> dict[str, Decimal]:
    """Minutes each live entry may count: one practitioner cannot spend the same minute twice."""
    allowed: dict[str, Decimal] = {}
    by_person: dict[str, list[TimeEntry]] = defaultdict(list)
    for e in entries:
        if e.entry_id not in dropped:
            by_person[e.practitioner_id].append(e)
    for group in by_person.values():
        busy_until = None
        for e in sorted(group, key=lambda e: (e.started_at, e.entry_id)):
            end = e.started_at + timedelta(microseconds=_entry_end_us(e))
            if busy_until is None or e.started_at >= busy_until:
                allowed[e.entry_id] = e.minutes
            else:
                free_us = max(0, int((end - busy_until) / timedelta(microseconds=1)))
                allowed[e.entry_id] = (Decimal(free_us) / _US_PER_MINUTE).quantize(_CENT, ROUND_DOWN)
            busy_until = end if busy_until is None else max(busy_until, end)
    return allowed


@fast_init
@dataclass(frozen=True, slots=True)
class EntryVerdict:
    entry: TimeEntry
    local_date: date
    counted: CountedEntry | None
    excluded: ExcludedEntry | None


def _person_exclusion(e: TimeEntry, ep: Episode, policy: Policy) -> str | None:
    people = policy.people
    if e.practitioner_role not in people.eligible_roles:
        return f"role {e.practitioner_role} cannot furnish RTM treatment management under {policy.id}"
    if (
        people.therapist_must_be_billing_practitioner
        and e.practitioner_role in people.therapist_roles
        and e.practitioner_id != ep.billing_practitioner_id
    ):
        return f"therapist {e.practitioner_id} is not the episode's billing practitioner"
    if e.practitioner_role in people.discipline_must_match_roles and e.discipline != ep.discipline:
        return f"discipline {e.discipline} does not match the episode's {ep.discipline}"
    return None


def judge_entries(
    ep: Episode,
    policy: Policy,
    entries: Sequence[TimeEntry],
    dropped: Mapping[str, str],
    allowed: Mapping[str, Decimal],
    tzh: TzHistory,
    consent: date | None,
) -> list[EntryVerdict]:
    """Every time entry of the episode: counted (with its minutes) or excluded (with why)."""
    out = []
    for e in entries:
        if e.episode_id != ep.episode_id:
            continue
        d = e.service_date or tzh.local_date(e.started_at)
        why = dropped.get(e.entry_id) or _person_exclusion(e, ep, policy)
        if why is None and e.other_service:
            why = f"counted toward {e.other_service}"
        if why is None and not _in_episode(ep, d):
            why = "outside the episode of care"
        if why is None and not _in_plan_of_care(ep, d):
            why = "outside the plan of care"
        if why is None and policy.gates.consent_before_data == "exclude_days" and consent and d < consent:
            why = "before consent"
        minutes = allowed.get(e.entry_id, Decimal(0))
        if why is None and minutes <= 0:
            why = "the same minutes are already counted by an overlapping entry of the same practitioner"
        if why is not None:
            out.append(EntryVerdict(e, d, None, ExcludedEntry(e.entry_id, why)))
            continue
        interactive = policy.interactive.counts(e.channel)
        counted = CountedEntry(
            e.entry_id, d, e.practitioner_id, e.practitioner_role, e.channel, e.activity, minutes, interactive
        )
        partial = None
        if minutes < e.minutes:
            partial = ExcludedEntry(e.entry_id, f"{fmt_minutes(e.minutes - minutes)} overlap another entry")
        out.append(EntryVerdict(e, d, counted, partial))
    return sorted(out, key=lambda v: (v.local_date, v.entry.started_at, v.entry.entry_id))


# ------------------------------------------------------------------------------ management ------


ManagementLines = tuple[tuple[tuple[str, int], ...], int | None, str]
# Months with the same total under the same policy read the same: (id, total) -> (policy, lines).
# The policy is kept in the value and checked by identity, so a reused id never answers wrongly.
_LINES: dict[tuple[int, Decimal], tuple[Policy, ManagementLines]] = {}


def management_lines(policy: Policy, total: Decimal) -> ManagementLines:
    """Codes and units the month's minutes reach (interactive contact aside), the minute threshold
    of the lowest code reached, and the wording. Equal totals (15 and 15.00) give the same answer
    and the same words, so they share a cache entry."""
    key = (id(policy), total)
    hit = _LINES.get(key)
    if hit is not None and hit[0] is policy:
        return hit[1]
    out = _management_lines(policy, total)
    if len(_LINES) >= _CACHE:
        _LINES.clear()
    _LINES[key] = (policy, out)
    return out


def _management_lines(policy: Policy, total: Decimal) -> ManagementLines:
    m = policy.management
    mins = fmt_minutes(total)
    if total >= m.first_minutes:
        extra = total - m.first_minutes
        units = int((extra / m.addon_minutes).to_integral_value(ROUND_DOWN))
        lines = ((m.first_code, 1), (m.addon_code, units)) if units else ((m.first_code, 1),)
        needed = m.addon_minutes * (units + 1) - extra
        text = f"{mins}: {m.first_code}" + (f" + {m.addon_code} x{units}" if units else "")
        return lines, m.first_minutes, f"{text}; {_more(needed)} more for another {m.addon_code}"
    if m.short_code and m.short_min_minutes is not None and total >= m.short_min_minutes:
        more = _more(m.first_minutes - total)
        return (
            ((m.short_code, 1),),
            m.short_min_minutes,
            f"{mins}: {m.short_code}; {more} more for {m.first_code}",
        )
    target, need = (m.short_code, m.short_min_minutes) if m.short_code else (m.first_code, m.first_minutes)
    assert need is not None
    return (), None, f"{mins}: {_more(need - total)} more for {target}"


def _threshold_day(counted: Sequence[CountedEntry], threshold: Decimal | int) -> date | None:
    """The day the month's minutes reached `threshold` with an interactive contact by then."""
    total, interactive = Decimal(0), False
    for c in counted:
        total += c.minutes
        interactive = interactive or c.interactive
        if total >= threshold and interactive:
            return c.local_date
    return None


def _line_threshold(policy: Policy, code: str, units: int) -> int:
    """Minutes that earn a management line: its own code's threshold, the last unit's for add-ons."""
    m = policy.management
    if code == m.addon_code:
        return m.first_minutes + m.addon_minutes * units
    if code == m.short_code and m.short_min_minutes is not None:
        return m.short_min_minutes
    return m.first_minutes


def management_result(
    ep: Episode,
    policy: Policy,
    month: date,
    verdicts: Sequence[EntryVerdict],
    windows: Sequence[Window],
    book: DayBook,
    periods: Sequence[Period],
    rpm: Sequence[RpmPeriod],
    as_of: date,
    sole: bool = False,
) -> Result:
    consent = book.consent_date
    start, end = month, month_end(month)
    mine = [v for v in verdicts if start <= v.local_date <= end]
    counted = [v.counted for v in mine if v.counted]
    total = sum((c.minutes for c in counted), Decimal(0))
    assistant = sum(
        (c.minutes for c in counted if c.practitioner_role in policy.people.assistant_roles), Decimal(0)
    )
    interactive = any(c.interactive for c in counted)
    first_counted = counted[0].local_date if counted else None
    gates = [
        consent_gate(ep, policy, consent, first_counted),
        plan_of_care_gate(ep, start, end),
        _monitoring_gate(policy, windows, book, periods, ep, start, end),
        billing_practitioner_gate(ep),
        rpm_gate(policy, rpm, start, end, "management"),
    ]
    raw, threshold, reason = management_lines(policy, total)
    unrecognised = [c for c, _ in raw if not policy.recognised(c)]
    if unrecognised:
        raw, reason = (), f"{reason}; {', '.join(unrecognised)} not recognised by {policy.id}"
    if raw and not interactive:
        sm = any(c.channel == "secure_message" for c in counted)
        note = " (secure messages do not count as interactive under this policy)" if sm else ""
        raw, reason = (), f"no interactive contact in the month{note}; {reason}"
    lines: tuple[CodeLine, ...] = ()
    if raw and _failed(gates):
        reason = _gate_reason(gates, reason)
    elif raw:
        mods = modifiers(policy, ep, "management", total, assistant)
        settled = _settled(mods, policy, ep, counted)  # once for the month's lines
        rule = policy.management.date_of_service
        last_entry = max(c.local_date for c in counted)
        built: list[CodeLine] = []
        for code, units in raw:
            need = _line_threshold(policy, code, units)
            earned = _threshold_day(counted, need)
            if built and built[0].earned_on and earned:  # an add-on never before its base code
                earned = max(earned, built[0].earned_on)
            why = f"{code}{f' x{units}' if units > 1 else ''} earned on {earned} ({need} minutes"
            why += " with interactive contact)"
            earned, why = _with_modifier_day(earned, why, mods, policy, ep, settled)
            dated = {"threshold_day": earned, "month_end": end, "last_entry": last_entry}[rule]
            built.append(_line(policy, code, units, mods, earned, dated, why))
        lines = tuple(built)
    elif _failed(gates):
        reason = _gate_reason(gates, reason)
    reached = _threshold_day(counted, threshold) if lines and threshold else None
    service = lines[0].service_date if lines else None
    final_on = _final_on(end, policy)
    return _result(
        "management", _month_suffix(month), ep, policy, as_of, final_on, gates, sole,
        period_index=None,
        period_start=start,
        period_end=end,
        lines=lines,
        service_date=service,
        reached_on=reached,
        early_release=False,
        reason=reason,
        minutes=total,
        assistant_minutes=assistant,
        interactive=interactive,
        entries=tuple(counted),
        excluded_entries=tuple(v.excluded for v in mine if v.excluded),
    )


@lru_cache(maxsize=_CACHE)
def _month_suffix(month: date) -> str:
    return f"/{month:%Y-%m}"


def _monitoring_gate(
    policy: Policy, windows: Sequence[Window], book: DayBook, periods: Sequence[Period], ep: Episode,
    start: date, end: date,
) -> Gate:
    """Was monitoring active in the month, under the policy's `management.monitoring_active`."""
    lo = max(start, ep.start_date)
    hi = min(end, ep.discharge_date) if ep.discharge_date else end
    rule = policy.management.monitoring_active
    device = qualifying_device_gate(windows, lo, hi)
    if rule == "device_assigned" or not device.passed:
        return _device_monitoring_gate(device, rule)
    if rule == "data_day":
        n, first = book.count_in(lo, hi) if lo <= hi else (0, None)
        return _data_day_monitoring_gate(n, first, rule)
    # A period counts when its data days reach a supply code's threshold: a period that merely
    # rolls on after the data stopped is no monitoring.
    need = policy.supply.short_min_days or policy.supply.long_min_days
    for p in periods:
        n = book.count_in(p.start, p.end)[0]
        if _overlaps(p.start, p.end, lo, hi) and n >= need:
            detail = f"device period {p.index} ({p.start}..{p.end}, {_days(n)}) overlaps the month"
            return Gate("monitoring_active", True, f"{detail} (policy: {rule})")
    detail = f"no device period with {need}+ data days overlaps the month (policy: {rule})"
    return Gate("monitoring_active", False, detail)


@lru_cache(maxsize=_CACHE)
def _device_monitoring_gate(device: Gate, rule: str) -> Gate:
    return Gate("monitoring_active", device.passed, f"{device.detail} (policy: {rule})")


@lru_cache(maxsize=_CACHE)
def _data_day_monitoring_gate(n: int, first: date | None, rule: str) -> Gate:
    if not n:
        return Gate("monitoring_active", False, f"no data day in the month (policy: {rule})")
    return Gate("monitoring_active", True, f"{_days(n)} in the month, first {first} (policy: {rule})")


# ------------------------------------------------------------------------------ set-up ----------


def setup_result(
    ep: Episode,
    policy: Policy,
    periods: Sequence[Period],
    book: DayBook,
    windows: Sequence[Window],
    verdicts: Sequence[EntryVerdict],
    rpm: Sequence[RpmPeriod],
    tzh: TzHistory,
    anchor: Anchor | None,
    as_of: date,
) -> Result:
    rule = policy.setup
    first = periods[0] if periods else None
    start, end = (first.start, first.end) if first else (ep.start_date, ep.start_date)
    days = book.in_range(start, end) if first else []
    d = len(days)
    documented = ep.setup_documented_at is not None
    gates = [
        Gate(
            "setup_documented",
            documented,
            "set-up and education documented" if documented else "not documented",
        ),
        consent_gate(ep, policy, book.consent_date, days[0].local_date if days else None),
        plan_of_care_gate(ep, start, end),
        qualifying_device_gate(windows, start, end)
        if first
        else Gate("qualifying_device", False, "no device data"),
        billing_practitioner_gate(ep),
        rpm_gate(policy, rpm, start, end, "setup"),
    ]
    n = rule.min_days_first_period
    where = "in the first device period" if first else "yet"
    if d >= n:
        reason = f"{_days(d)} {where}: {rule.code} (needs {n})"
    else:
        reason = f"{_days(d)} {where}: {n - d} more for {rule.code}"
    reached = days[n - 1].local_date if d >= n else None
    lines: tuple[CodeLine, ...] = ()
    if reached and not policy.recognised(rule.code):
        reason = f"{reason}; {rule.code} not recognised by {policy.id}"
    elif reached and _failed(gates):
        reason = _gate_reason(gates, reason)
    elif reached:
        setup_work = [
            v.counted
            for v in verdicts
            if v.counted and v.counted.activity in rule.activities and v.local_date <= end
        ]
        total = sum((c.minutes for c in setup_work), Decimal(0))
        assistant = sum(
            (c.minutes for c in setup_work if c.practitioner_role in policy.people.assistant_roles),
            Decimal(0),
        )
        mods = modifiers(policy, ep, "setup", total, assistant)
        why = f"{rule.code} earned on {reached}, data day {n} of the first period"
        earned, why = _with_modifier_day(reached, why, mods, policy, ep, _settled(mods, policy, ep, setup_work))
        documented_day = tzh.local_date(ep.setup_documented_at) if ep.setup_documented_at else None
        setup_day = ep.setup_date or documented_day or reached
        dated = setup_day if rule.date_of_service == "setup_date" else earned
        lines = (_line(policy, rule.code, 1, mods, earned, dated, why),)
    elif _failed(gates):
        reason = _gate_reason(gates, reason)
    service = lines[0].service_date if lines else None
    final_on = _final_on(first.end, policy) if first else None
    if first is None and ep.discharge_date:
        final_on = _final_on(ep.discharge_date, policy)
    return _result(
        "setup", "", ep, policy, as_of, final_on, gates,
        period_index=0 if first else None,
        period_start=start,
        period_end=end,
        lines=lines,
        service_date=service,
        reached_on=reached,
        early_release=bool(lines) and rule.release_at_threshold,
        reason=reason,
        data_days=d,
        days=tuple(days),
        anchor=anchor,
    )


def unknown_policy_result(ep: Episode, as_of: date) -> Result:
    """An episode naming a policy we do not have gets one answer saying so, never a guess."""
    return Result(
        key=f"setup/{ep.episode_id}",
        kind="setup",
        patient_id=ep.patient_id,
        episode_id=ep.episode_id,
        clinic_id=ep.clinic_id,
        policy_id=ep.payer_policy,
        policy_version="unknown",
        period_index=None,
        period_start=ep.start_date,
        period_end=ep.start_date,
        lines=(),
        service_date=None,
        reached_on=None,
        status="provisional",
        final_on=date.max,
        early_release=False,
        reason=f"no code: unknown payer policy {ep.payer_policy!r}",
        gates=(Gate("policy", False, f"unknown payer policy {ep.payer_policy!r}"),),
        billing_practitioner_id=ep.billing_practitioner_id,
    )


# ------------------------------------------------------------------------------ one biller ------


def one_practitioner(results: list[Result], order: Mapping[str, int]) -> list[Result]:
    """Only one episode (so one practitioner) bills each kind of RTM code for a patient in
    overlapping periods: the episode that started first keeps it; the other is told why."""
    out: list[Result] = []
    kept: list[Result] = []
    ranked = sorted(results, key=lambda r: (order[r.episode_id], r.period_start, r.key))
    for r in ranked:
        if r.kind == "setup":
            out.append(r)
            continue
        clash = next(
            (
                k
                for k in kept
                if k.kind == r.kind
                and k.episode_id != r.episode_id
                and _overlaps(k.period_start, k.period_end, r.period_start, r.period_end)
            ),
            None,
        )
        if clash and r.lines:
            gate = Gate(
                "one_practitioner",
                False,
                f"episode {clash.episode_id} ({clash.billing_practitioner_id}) already bills "
                f"{'/'.join(clash.codes)} for this patient over {clash.period_start}..{clash.period_end}",
            )
            gates = (*r.gates, gate)
            why = _gate_reason(gates, r.reason)
            r = replace(r, lines=(), service_date=None, early_release=False, gates=gates, reason=why)
        else:
            detail = f"{r.billing_practitioner_id} is the only practitioner billing RTM here"
            r = replace(r, gates=(*r.gates, Gate("one_practitioner", True, detail)))
            if r.lines:
                kept.append(r)
        out.append(r)
    return sorted(out, key=lambda r: r.key)


# ------------------------------------------------------------------------------ entry point -----


def compute_patient(inputs: PatientInputs, policies: Mapping[str, Policy], as_of: date) -> list[Result]:
    """Every answer for one patient as of a date: set-up, device periods and months, per episode."""
    tzh = TzHistory(inputs.timezones)
    dropped = resolve_corrections(inputs.entries)
    allowed = remove_overlaps(inputs.entries, dropped)
    episodes = sorted(inputs.episodes, key=lambda e: (e.start_date, e.episode_id))
    results: list[Result] = []
    sole = len(episodes) == 1  # the usual case: no other episode to compare with
    for ep in episodes:
        policy = policies.get(ep.payer_policy)
        if policy is None:
            results.append(unknown_policy_result(ep, as_of))
            continue
        windows = episode_windows(ep.episode_id, inputs.assignments, tzh)
        book = classify_days(ep, policy, windows, inputs.facts, tzh, as_of)
        anchor = period_anchor(ep, policy, book)
        periods = device_periods(
            anchor.date if anchor else None, policy.supply.period_days, ep.discharge_date, as_of
        )
        verdicts = judge_entries(ep, policy, inputs.entries, dropped, allowed, tzh, book.consent_date)
        rpm = inputs.rpm_periods
        results.append(setup_result(ep, policy, periods, book, windows, verdicts, rpm, tzh, anchor, as_of))
        results += [supply_result(ep, policy, p, book, windows, rpm, anchor, as_of, sole) for p in periods]
        last = min(ep.discharge_date, as_of) if ep.discharge_date else as_of
        for month in calendar_months(ep.start_date, last):
            results.append(
                management_result(ep, policy, month, verdicts, windows, book, periods, rpm, as_of, sole)
            )
    order = {ep.episode_id: i for i, ep in enumerate(episodes)}
    out = sorted(results, key=lambda r: r.key) if sole else one_practitioner(results, order)
    for r in out:
        for line in r.lines:
            if line.service_date is None or (line.earned_on and line.service_date < line.earned_on):
                raise AssertionError(f"{r.key}: {line.code} dated {line.service_date} before it was earned")
    return out
