"""The rules: a patient's recent facts -> the flag each kind should have (pure, deterministic).

A rule says RAISE (with a severity), CLEAR, or UNKNOWN (too little data to say; a stored flag is
left as it is). Every verdict carries its evidence: the values and dates it looked at, the method
and the thresholds used. Dates are patient-local; "today" is never judged by adherence or dose
because it is still in progress.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

import numpy as np

from flags.model import Kind, Outcome, PatientFacts, Session, Severity, Verdict
from flags.settings import FlagSettings
from flags.trends import TrendStatus, classify_trend, robust_deviation

DAYS_PER_WEEK = 7
SECONDS_PER_DAY = 86_400.0
# Severity of each ROM trend status (regressing is worse than a stall).
TREND_SEVERITY = {TrendStatus.STALLED: Severity.LOW, TrendStatus.REGRESSING: Severity.HIGH}
RECENT_FOR_TARGET = 3  # sessions whose median ROM decides "target reached"

Rule = Callable[[PatientFacts, FlagSettings], Verdict]


def _r(value: float | None, digits: int = 3) -> float | None:
    """Rounded for evidence: stable JSON, no spurious updates from the last bits of a float."""
    return None if value is None else round(float(value), digits)


def _dates(days: Sequence[date] | frozenset[date]) -> list[str]:
    return [d.isoformat() for d in sorted(days)]


def _window(today: date, days: int) -> list[date]:
    """The `days` complete local days before today."""
    return [today - timedelta(days=i) for i in range(days, 0, -1)]


# ------------------------------------------------------------------------------ adherence -------


def _expected_share(facts: PatientFacts, day: date, s: FlagSettings) -> float | None:
    """The share of an exercise day the plan expects on a local date (None: no plan that day).

    A plan's exercise days per week = the largest sessions_per_week of the exercises in force,
    capped at 7: a conservative lower bound (exercises spread over different days are not
    over-expected; twice a day still means one exercise day).
    """
    if facts.monitoring_start is None or day < facts.monitoring_start:
        return None
    plan = facts.plan_on(day)
    if plan:
        per_week = min(DAYS_PER_WEEK, max(p.sessions_per_week for p in plan.values()))
    elif any(p.effective_from <= day for p in facts.prescriptions):
        per_week = 0  # every exercise discontinued: nothing expected
    elif s.default_sessions_per_week is not None:
        per_week = min(DAYS_PER_WEEK, s.default_sessions_per_week)
    else:
        return None
    return per_week / DAYS_PER_WEEK


def adherence_rule(facts: PatientFacts, s: FlagSettings) -> Verdict:
    """Days with exercise in the last complete days versus the plan's expected days (count ratio)."""
    days = _window(facts.today, s.adherence_window_days)
    covered: list[date] = []
    expected = 0.0
    for day in days:
        share = _expected_share(facts, day, s)
        if share is not None:
            covered.append(day)
            expected += share
    observed = [d for d in covered if d in facts.exercise_days]
    previous = _window(days[0], s.adherence_window_days)
    evidence: dict[str, Any] = {
        "method": "exercise days in the window / days the plan expects (sessions_per_week/7 per day)",
        "window": [days[0].isoformat(), days[-1].isoformat()],
        "plan_days_in_window": len(covered),
        "exercise_dates": _dates(observed),
        "observed_days": len(observed),
        "expected_days": _r(expected, 2),
        "previous_window_observed_days": sum(1 for d in previous if d in facts.exercise_days),
        "plan": {
            e: {"sessions_per_week": p.sessions_per_week, "since": p.effective_from.isoformat()}
            for e, p in sorted(facts.plan_on(days[-1]).items())
        },
        "thresholds": s.subset("adherence_", "default_sessions_per_week"),
    }
    if len(covered) < s.adherence_min_plan_days:
        return Verdict(
            Kind.ADHERENCE_FALLING, Outcome.UNKNOWN, evidence | {"reason": "plan too recent or absent"}
        )
    if expected <= 0:
        return Verdict(Kind.ADHERENCE_FALLING, Outcome.CLEAR, evidence | {"reason": "no exercise expected"})
    ratio = min(1.0, len(observed) / expected)
    evidence["ratio"] = _r(ratio)
    if ratio < s.adherence_high_ratio:
        return Verdict(Kind.ADHERENCE_FALLING, Outcome.RAISE, evidence, Severity.HIGH)
    if ratio < s.adherence_warn_ratio:
        return Verdict(Kind.ADHERENCE_FALLING, Outcome.RAISE, evidence, Severity.MEDIUM)
    return Verdict(Kind.ADHERENCE_FALLING, Outcome.CLEAR, evidence)


# ------------------------------------------------------------------------------ no data ---------


def no_data_rule(facts: PatientFacts, s: FlagSettings) -> Verdict:
    """Complete local days since the last data day (or since monitoring began, if none since)."""
    assert facts.monitoring_start is not None
    first_missing = facts.monitoring_start
    if facts.last_data_day is not None:
        first_missing = max(first_missing, facts.last_data_day + timedelta(days=1))
    gap = max(0, (facts.today - first_missing).days)
    evidence: dict[str, Any] = {
        "method": "complete local days without a data day (qualifying data or exercise from any device)",
        "last_data_date": facts.last_data_day.isoformat() if facts.last_data_day else None,
        "monitoring_start": facts.monitoring_start.isoformat(),
        "days_without_data": gap,
        "thresholds": s.subset("no_data_"),
    }
    if gap >= s.no_data_high_days:
        return Verdict(Kind.NO_DATA, Outcome.RAISE, evidence, Severity.HIGH)
    if gap >= s.no_data_days:
        return Verdict(Kind.NO_DATA, Outcome.RAISE, evidence, Severity.MEDIUM)
    return Verdict(Kind.NO_DATA, Outcome.CLEAR, evidence)


# ------------------------------------------------------------------------------ dose ------------


def _dose(facts: PatientFacts, session: Session) -> int | None:
    """Prescribed reps for a session: the episode's prescription, else the session marker's."""
    if session.exercise is not None:
        p = facts.plan_on(session.local_date).get(session.exercise)
        if p is not None and p.dose is not None:
            return p.dose
    return session.marker_dose


def dose_rule(facts: PatientFacts, s: FlagSettings) -> Verdict:
    """Median over recent complete sessions of full repetitions / prescribed sets x reps."""
    first = facts.today - timedelta(days=s.dose_window_days)
    rows = []
    for session in facts.sessions:
        if not session.complete or not (first <= session.local_date <= facts.today):
            continue
        dose = _dose(facts, session)
        if dose:
            rows.append((session, dose, session.full_reps / dose))
    evidence: dict[str, Any] = {
        "method": "median over sessions of full reps / prescribed (sets x reps); partial reps excluded",
        "window": [first.isoformat(), facts.today.isoformat()],
        "sessions": [
            {"date": x.local_date.isoformat(), "exercise": x.exercise, "reps": x.full_reps, "prescribed": d,
             "ratio": _r(q)}
            for x, d, q in rows
        ],
        "thresholds": s.subset("dose_"),
    }  # fmt: skip
    if len(rows) < s.dose_min_sessions:
        return Verdict(
            Kind.REPS_BELOW_DOSE, Outcome.UNKNOWN, evidence | {"reason": "too few sessions with a dose"}
        )
    median = float(np.median([q for _, _, q in rows]))
    evidence["median_ratio"] = _r(median)
    if median < s.dose_high_ratio:
        return Verdict(Kind.REPS_BELOW_DOSE, Outcome.RAISE, evidence, Severity.HIGH)
    if median < s.dose_warn_ratio:
        return Verdict(Kind.REPS_BELOW_DOSE, Outcome.RAISE, evidence, Severity.MEDIUM)
    return Verdict(Kind.REPS_BELOW_DOSE, Outcome.CLEAR, evidence)


# ------------------------------------------------------------------------------ ROM -------------


def _rom_series(facts: PatientFacts, first: date) -> dict[str, list[Session]]:
    """Complete sessions with a ROM value since `first`, per exercise, in time order (one per instant).

    A session still in progress is left out: its first reps (a warm-up) must not look like a drop.
    """
    series: dict[str, list[Session]] = defaultdict(list)
    for session in facts.sessions:
        if session.exercise is None or session.rom_deg is None or session.local_date < first:
            continue
        if not session.complete:
            continue
        same = series[session.exercise]
        if same and same[-1].start == session.start:
            continue  # two sessions at one instant cannot both be points of a time series
        same.append(session)
    return dict(sorted(series.items()))


def _combine(kind: Kind, per_exercise: dict[str, tuple[Outcome, Severity | None, dict[str, Any]]],
             base: dict[str, Any]) -> Verdict:  # fmt: skip
    """One flag per patient and kind: the worst exercise decides; any clear beats all unknown."""
    evidence = base | {"exercises": {e: ev for e, (_, _, ev) in per_exercise.items()}}
    raised = [sev for outcome, sev, _ in per_exercise.values() if outcome is Outcome.RAISE and sev]
    if raised:
        return Verdict(kind, Outcome.RAISE, evidence, max(raised, key=lambda v: v.rank))
    if any(outcome is Outcome.CLEAR for outcome, _, _ in per_exercise.values()):
        return Verdict(kind, Outcome.CLEAR, evidence)
    return Verdict(kind, Outcome.UNKNOWN, evidence)


def rom_trend_rule(facts: PatientFacts, s: FlagSettings) -> Verdict:
    """Per exercise: Theil-Sen slope of session ROM with a Mann-Kendall test over the recent weeks."""
    first = facts.today - timedelta(days=s.rom_trend_days)
    per_exercise: dict[str, tuple[Outcome, Severity | None, dict[str, Any]]] = {}
    for exercise, sessions in _rom_series(facts, first).items():
        t0 = sessions[0].start
        days = np.array([(v.start - t0).total_seconds() / SECONDS_PER_DAY for v in sessions])
        y = np.array([v.rom_deg for v in sessions], dtype=np.float64)
        trend = classify_trend(
            y, days,
            alpha=s.rom_trend_alpha,
            min_gain=s.rom_min_gain_deg_per_week / DAYS_PER_WEEK,
            min_loss=s.rom_regress_deg_per_week / DAYS_PER_WEEK,
            min_points=s.rom_trend_min_sessions,
            min_span=float(s.rom_trend_min_span_days),
        )  # fmt: skip
        ev: dict[str, Any] = {
            "status": trend.status.value,
            "dates": [v.local_date.isoformat() for v in sessions],
            "rom_deg": [_r(float(v), 1) for v in y],
            "n": trend.n,
            "span_days": _r(trend.span, 2),
        }
        if trend.mk is not None and trend.slope is not None:
            ev |= {
                "slope_deg_per_week": _r(trend.slope * DAYS_PER_WEEK, 2),
                "slope_ci_deg_per_week": [_r((trend.slope_low or 0) * DAYS_PER_WEEK, 2),
                                          _r((trend.slope_high or 0) * DAYS_PER_WEEK, 2)],
                "mann_kendall": {"s": trend.mk.s, "z": _r(trend.mk.z), "p": _r(trend.mk.p, 4),
                                 "tau": _r(trend.mk.tau)},
            }  # fmt: skip
        plan = facts.plan_on(facts.today).get(exercise)
        target = plan.target_rom_deg if plan else None
        recent = float(np.median(y[-RECENT_FOR_TARGET:])) if y.size else None
        if target is not None:
            ev |= {"target_rom_deg": target, "recent_median_rom_deg": _r(recent, 1)}
        if trend.status is TrendStatus.INSUFFICIENT:
            per_exercise[exercise] = (Outcome.UNKNOWN, None, ev)
        elif trend.status is TrendStatus.IMPROVING:
            per_exercise[exercise] = (Outcome.CLEAR, None, ev)
        elif (
            trend.status is TrendStatus.STALLED
            and target is not None
            and recent is not None
            and recent >= target
        ):
            per_exercise[exercise] = (Outcome.CLEAR, None, ev | {"reason": "target reached"})
        else:
            per_exercise[exercise] = (Outcome.RAISE, TREND_SEVERITY[trend.status], ev)
    base = {
        "method": "Theil-Sen slope (Sen 1968) of per-session median ROM; Mann-Kendall test (Mann 1945; "
        "Kendall 1975) with tie-corrected variance",
        "window": [first.isoformat(), facts.today.isoformat()],
        "thresholds": s.subset("rom_trend_", "rom_min_gain", "rom_regress", "rom_min_reps"),
    }
    return _combine(Kind.ROM_TREND, per_exercise, base)


def rom_drop_rule(facts: PatientFacts, s: FlagSettings) -> Verdict:
    """Per exercise: the latest session's ROM against the median and MAD of the sessions before it."""
    first = facts.today - timedelta(days=s.rom_trend_days)
    per_exercise: dict[str, tuple[Outcome, Severity | None, dict[str, Any]]] = {}
    for exercise, sessions in _rom_series(facts, first).items():
        latest = sessions[-1]
        baseline = sessions[-1 - s.rom_drop_baseline_sessions : -1]
        ev: dict[str, Any] = {
            "latest": {"date": latest.local_date.isoformat(), "rom_deg": _r(latest.rom_deg, 1),
                       "reps": latest.rom_reps},
            "baseline_dates": [x.local_date.isoformat() for x in baseline],
            "baseline_rom_deg": [_r(x.rom_deg, 1) for x in baseline],
        }  # fmt: skip
        if len(baseline) < s.rom_drop_min_baseline or latest.rom_deg is None:
            per_exercise[exercise] = (Outcome.UNKNOWN, None, ev)
            continue
        dev = robust_deviation(latest.rom_deg, [x.rom_deg for x in baseline if x.rom_deg is not None],
                               sigma_floor=s.rom_drop_sigma_floor_deg)  # fmt: skip
        drop = dev.baseline_median - dev.value
        ev |= {
            "baseline_median_deg": _r(dev.baseline_median, 1),
            "mad_sigma_deg": _r(dev.mad_sigma, 2),
            "sigma_used_deg": _r(dev.sigma, 2),
            "robust_z": _r(dev.z, 2),
            "drop_deg": _r(drop, 1),
        }
        if dev.z <= -s.rom_drop_z and drop >= s.rom_drop_min_deg:
            severity = Severity.HIGH if drop >= s.rom_drop_high_deg else Severity.MEDIUM
            per_exercise[exercise] = (Outcome.RAISE, severity, ev)
        else:
            per_exercise[exercise] = (Outcome.CLEAR, None, ev)
    base = {
        "method": "robust z = (latest - median(baseline)) / max(1.4826 MAD, floor) (Hampel 1974; "
        "Leys et al. 2013), and a minimum drop in degrees",
        "thresholds": s.subset("rom_drop_", "rom_min_reps"),
    }
    return _combine(Kind.ROM_DROP, per_exercise, base)


# ------------------------------------------------------------------------------ all -------------

RULES: dict[Kind, Rule] = {
    Kind.ADHERENCE_FALLING: adherence_rule,
    Kind.NO_DATA: no_data_rule,
    Kind.REPS_BELOW_DOSE: dose_rule,
    Kind.ROM_TREND: rom_trend_rule,
    Kind.ROM_DROP: rom_drop_rule,
}


def evaluate(facts: PatientFacts, s: FlagSettings) -> dict[Kind, Verdict]:
    """Every kind's verdict for one patient. Not monitored (no active episode): every kind says so."""
    if facts.episode_id is None or facts.monitoring_start is None:
        return {k: Verdict(k, Outcome.NOT_MONITORED, {"reason": "no active episode"}) for k in RULES}
    return {kind: rule(facts, s) for kind, rule in RULES.items()}
