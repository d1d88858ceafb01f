"""Each rule on hand-built facts: what raises, at what severity, what clears, what is unknown."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pytest

from flags.model import Kind, Outcome, PatientFacts, Prescription, Session, Severity
from flags.rules import (
    adherence_rule,
    dose_rule,
    evaluate,
    no_data_rule,
    rom_drop_rule,
    rom_trend_rule,
)
from flags.settings import FlagSettings

TODAY = date(2026, 3, 20)
START = date(2026, 2, 1)
S = FlagSettings()


def ago(n: int) -> date:
    return TODAY - timedelta(days=n)


def facts(**kw: object) -> PatientFacts:
    base = PatientFacts(
        patient_id="p",
        clinic_id="c",
        today=TODAY,
        episode_id="e",
        monitoring_start=START,
        prescriptions=(Prescription("knee_extension", START, 5, 2, 10),),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def session(day: date, reps: int = 20, rom: float | None = 90.0, *, exercise: str = "knee_extension",
            complete: bool = True, marker_dose: int | None = None, hour: int = 15) -> Session:  # fmt: skip
    return Session(
        key=f"{exercise}@{day}",
        exercise=exercise,
        local_date=day,
        start=datetime.combine(day, time(hour), UTC),
        full_reps=reps,
        rom_deg=rom,
        rom_reps=reps,
        complete=complete,
        marker_dose=marker_dose,
    )


def rom_sessions(values: list[float], days_back: int = 20) -> tuple[Session, ...]:
    days = np.linspace(days_back, 1, len(values)).round().astype(int)
    return tuple(session(ago(int(d)), rom=v) for d, v in zip(days, values, strict=True))


# ------------------------------------------------------------------------------ adherence -------


@pytest.mark.parametrize(
    ("days_done", "outcome", "severity"),
    [(5, Outcome.CLEAR, None), (4, Outcome.CLEAR, None), (3, Outcome.RAISE, Severity.MEDIUM),
     (2, Outcome.RAISE, Severity.MEDIUM), (1, Outcome.RAISE, Severity.HIGH),
     (0, Outcome.RAISE, Severity.HIGH)],
)  # fmt: skip
def test_adherence_against_five_a_week(days_done: int, outcome: Outcome, severity: Severity | None) -> None:
    v = adherence_rule(facts(exercise_days=frozenset(ago(i) for i in range(1, days_done + 1))), S)
    assert (v.outcome, v.severity) == (outcome, severity)
    assert v.evidence["observed_days"] == days_done
    assert v.evidence["expected_days"] == 5.0
    assert v.evidence["window"] == [ago(7).isoformat(), ago(1).isoformat()]
    assert v.evidence["thresholds"]["adherence_warn_ratio"] == S.adherence_warn_ratio


def test_adherence_today_is_not_judged_and_older_days_do_not_count() -> None:
    done = frozenset({TODAY, ago(8), ago(9), ago(10), ago(11), ago(12)})
    v = adherence_rule(facts(exercise_days=done), S)
    assert v.evidence["observed_days"] == 0
    assert v.evidence["previous_window_observed_days"] == 5  # context: it is falling
    assert v.severity is Severity.HIGH


def test_adherence_needs_a_plan_in_force_for_the_window() -> None:
    recent = facts(prescriptions=(Prescription("knee_extension", ago(3), 5),))
    assert adherence_rule(recent, S).outcome is Outcome.UNKNOWN
    assert adherence_rule(facts(prescriptions=()), S).outcome is Outcome.UNKNOWN
    with_default = FlagSettings(default_sessions_per_week=7)
    v = adherence_rule(facts(prescriptions=(), exercise_days=frozenset({ago(1), ago(2)})), with_default)
    assert v.evidence["expected_days"] == 7.0 and v.severity is Severity.HIGH


def test_adherence_plan_is_the_largest_frequency_capped_at_daily() -> None:
    plan = (Prescription("knee_extension", START, 3), Prescription("heel_slide", START, 14))
    v = adherence_rule(facts(prescriptions=plan, exercise_days=frozenset(ago(i) for i in range(1, 7))), S)
    assert v.evidence["expected_days"] == 7.0
    assert v.outcome is Outcome.CLEAR  # 6 of 7


def test_adherence_discontinued_plan_expects_nothing() -> None:
    plan = (Prescription("knee_extension", START, 5), Prescription("knee_extension", ago(20), 0))
    assert adherence_rule(facts(prescriptions=plan), S).outcome is Outcome.CLEAR


# ------------------------------------------------------------------------------ no data ---------


@pytest.mark.parametrize(
    ("last", "outcome", "severity", "gap"),
    [(0, Outcome.CLEAR, None, 0), (1, Outcome.CLEAR, None, 0), (3, Outcome.CLEAR, None, 2),
     (4, Outcome.RAISE, Severity.MEDIUM, 3), (7, Outcome.RAISE, Severity.MEDIUM, 6),
     (8, Outcome.RAISE, Severity.HIGH, 7)],
)  # fmt: skip
def test_no_data_counts_complete_days(
    last: int, outcome: Outcome, severity: Severity | None, gap: int
) -> None:
    v = no_data_rule(facts(last_data_day=ago(last)), S)
    assert (v.outcome, v.severity, v.evidence["days_without_data"]) == (outcome, severity, gap)


def test_no_data_ever_counts_from_monitoring_start() -> None:
    assert no_data_rule(facts(monitoring_start=ago(2)), S).outcome is Outcome.CLEAR
    v = no_data_rule(facts(monitoring_start=ago(5)), S)
    assert v.evidence["days_without_data"] == 5 and v.severity is Severity.MEDIUM
    # Data from before this episode does not count against a new one.
    assert no_data_rule(facts(monitoring_start=ago(1), last_data_day=ago(60)), S).outcome is Outcome.CLEAR


# ------------------------------------------------------------------------------ dose ------------


@pytest.mark.parametrize(
    ("reps", "outcome", "severity"),
    [(20, Outcome.CLEAR, None), (16, Outcome.CLEAR, None), (15, Outcome.RAISE, Severity.MEDIUM),
     (10, Outcome.RAISE, Severity.MEDIUM), (9, Outcome.RAISE, Severity.HIGH)],
)  # fmt: skip
def test_dose_median_ratio(reps: int, outcome: Outcome, severity: Severity | None) -> None:
    done = (session(ago(3), reps), session(ago(2), reps), session(ago(1), 40))
    v = dose_rule(facts(sessions=done), S)
    assert (v.outcome, v.severity) == (outcome, severity)
    assert v.evidence["sessions"][0]["prescribed"] == 20


def test_dose_ignores_sessions_in_progress_and_uses_marker_dose() -> None:
    done = (session(ago(2), 5), session(TODAY, 2, complete=False))
    assert dose_rule(facts(sessions=done), S).outcome is Outcome.UNKNOWN  # one judged session
    marker_only = facts(
        prescriptions=(Prescription("knee_extension", START, 5),),  # no sets x reps in the plan
        sessions=(session(ago(2), 6, marker_dose=24), session(ago(1), 6, marker_dose=24)),
    )
    v = dose_rule(marker_only, S)
    assert v.severity is Severity.HIGH and v.evidence["median_ratio"] == 0.25


# ------------------------------------------------------------------------------ ROM trend -------


def test_rom_trend_stalled_regressing_improving() -> None:
    rng = np.random.default_rng(1)
    flat = list(90 + rng.normal(0, 2.5, 14))
    v = rom_trend_rule(facts(sessions=rom_sessions(flat)), S)
    assert (v.outcome, v.severity) == (Outcome.RAISE, Severity.LOW)
    ev = v.evidence["exercises"]["knee_extension"]
    assert ev["status"] == "stalled" and "mann_kendall" in ev and ev["n"] == 14
    assert "Theil-Sen" in v.evidence["method"] and "Mann-Kendall" in v.evidence["method"]

    falling = list(100 - np.linspace(0, 12, 14) + rng.normal(0, 1.5, 14))
    v = rom_trend_rule(facts(sessions=rom_sessions(falling)), S)
    assert (v.outcome, v.severity) == (Outcome.RAISE, Severity.HIGH)
    assert v.evidence["exercises"]["knee_extension"]["slope_deg_per_week"] < -2

    rising = list(70 + np.linspace(0, 15, 14) + rng.normal(0, 1.5, 14))
    assert rom_trend_rule(facts(sessions=rom_sessions(rising)), S).outcome is Outcome.CLEAR


def test_rom_trend_stall_at_target_is_fine_and_worst_exercise_decides() -> None:
    flat = rom_sessions(list(120 + np.random.default_rng(2).normal(0, 1, 12)))
    at_target = facts(
        sessions=flat, prescriptions=(Prescription("knee_extension", START, 5, target_rom_deg=115),)
    )
    v = rom_trend_rule(at_target, S)
    assert (
        v.outcome is Outcome.CLEAR and v.evidence["exercises"]["knee_extension"]["reason"] == "target reached"
    )

    falling = tuple(
        replace(x, exercise="heel_slide", key=f"hs{i}", start=x.start + timedelta(hours=1))
        for i, x in enumerate(rom_sessions(list(100 - np.linspace(0, 14, 12))))
    )
    both = facts(sessions=tuple(sorted(flat + falling, key=lambda x: x.start)))
    v = rom_trend_rule(both, S)
    assert v.severity is Severity.HIGH
    assert set(v.evidence["exercises"]) == {"heel_slide", "knee_extension"}


def test_rom_trend_insufficient_is_unknown() -> None:
    v = rom_trend_rule(facts(sessions=rom_sessions([90, 80, 70, 60], days_back=12)), S)
    assert v.outcome is Outcome.UNKNOWN
    assert rom_trend_rule(facts(), S).outcome is Outcome.UNKNOWN


# ------------------------------------------------------------------------------ ROM drop --------


def test_rom_drop_against_recent_median() -> None:
    base = [90.0, 92.0, 91.0, 89.0, 90.0]
    v = rom_drop_rule(facts(sessions=rom_sessions([*base, 74.0], days_back=10)), S)
    assert (v.outcome, v.severity) == (Outcome.RAISE, Severity.HIGH)
    ev = v.evidence["exercises"]["knee_extension"]
    assert ev["baseline_median_deg"] == 90.0 and ev["drop_deg"] == 16.0 and ev["robust_z"] <= -3

    v = rom_drop_rule(facts(sessions=rom_sessions([*base, 80.0], days_back=10)), S)
    assert (v.outcome, v.severity) == (Outcome.RAISE, Severity.MEDIUM)
    assert (
        rom_drop_rule(facts(sessions=rom_sessions([*base, 86.0], days_back=10)), S).outcome is Outcome.CLEAR
    )


def test_rom_rules_leave_out_a_session_in_progress() -> None:
    base = rom_sessions([90.0, 92.0, 91.0, 89.0, 90.0], days_back=10)
    warming_up = (*base, session(TODAY, rom=60.0, complete=False))
    v = rom_drop_rule(facts(sessions=warming_up), S)
    assert v.outcome is Outcome.CLEAR
    assert v.evidence["exercises"]["knee_extension"]["latest"]["date"] == ago(1).isoformat()


def test_rom_drop_needs_a_robust_and_meaningful_drop() -> None:
    noisy = [90.0, 70.0, 105.0, 80.0, 98.0]  # a wide baseline: a 10-degree dip is ordinary
    v = rom_drop_rule(facts(sessions=rom_sessions([*noisy, 80.0], days_back=10)), S)
    assert v.outcome is Outcome.CLEAR
    few = rom_drop_rule(facts(sessions=rom_sessions([90.0, 91.0, 60.0], days_back=5)), S)
    assert few.outcome is Outcome.UNKNOWN


# ------------------------------------------------------------------------------ all -------------


def test_not_monitored_and_deterministic() -> None:
    verdicts = evaluate(facts(episode_id=None, monitoring_start=None), S)
    assert {v.outcome for v in verdicts.values()} == {Outcome.NOT_MONITORED}
    assert set(verdicts) == set(Kind)
    f = facts(sessions=rom_sessions(list(100 - np.linspace(0, 12, 14))), last_data_day=ago(1))
    assert evaluate(f, S) == evaluate(f, S)


def test_settings_validate_their_order() -> None:
    with pytest.raises(ValueError):
        FlagSettings(adherence_high_ratio=0.9)
    with pytest.raises(ValueError):
        FlagSettings(no_data_days=10, no_data_high_days=5)
