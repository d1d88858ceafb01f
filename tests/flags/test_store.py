"""Flags through the real database: raised once, updated in place, resolved, acknowledged, audited."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest

from flags import (
    FlagNotFound,
    FlagSettings,
    FlagStateError,
    acknowledge,
    evaluate_all,
    evaluate_patients,
    open_flags,
    resolve,
)
from flags.review import flag_audit
from rtm.db import Conn
from rtm.settings import Settings
from tests.flags.factory import Patient, local

pytestmark = pytest.mark.integration

MakePatient = Callable[..., Patient]
START = date(2026, 2, 2)
D0 = date(2026, 3, 2)


def at(day: date, hour: float = 20) -> Any:
    return local(day, hour)


def audit(db: Conn, flag_id: int) -> list[tuple[str, str, str]]:
    return [(e.action, e.actor, e.to_state.value) for e in flag_audit(db, flag_id)]


def test_no_data_raised_once_updated_in_place_and_resolved(db: Conn, make_patient: MakePatient) -> None:
    p = make_patient(START)
    p.day(D0)
    s = evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=4)))
    assert (s.patients, s.monitored, s.raised) == (1, 1, 1)
    assert s.by_kind == {"no_data": 1}
    first = p.flag("no_data")
    assert (first["severity"], first["state"]) == ("medium", "open")
    assert first["evidence"]["days_without_data"] == 3
    assert first["evidence"]["last_data_date"] == D0.isoformat()
    assert first["evidence"]["thresholds"] == {"no_data_days": 3, "no_data_high_days": 7}

    # The same batch again (a replay, or the next sink batch): nothing is written.
    again = evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=4)))
    assert (again.raised, again.updated, again.unchanged) == (0, 0, 1)
    assert p.flag("no_data")["updated_at"] == first["updated_at"]

    # A day later: the same flag, new evidence.
    later = evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=5)))
    assert (later.raised, later.updated) == (0, 1)
    assert p.flag("no_data")["evidence"]["days_without_data"] == 4

    # A week without data: same flag, severity high.
    evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=8)))
    flag = p.flag("no_data")
    assert (flag["flag_id"], flag["severity"]) == (first["flag_id"], "high")

    # Data arrives: resolved, with the evidence of why.
    p.day(D0 + timedelta(days=8))
    done = evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=8), 21))
    assert done.resolved == 1 and done.by_kind == {}
    flag = p.flag("no_data")
    assert (flag["state"], flag["resolution"], flag["resolved_by"]) == ("resolved", "cleared", None)
    assert flag["resolution_evidence"]["days_without_data"] == 0
    assert audit(db, flag["flag_id"]) == [
        ("raised", "rtm-flags", "open"),
        ("severity", "rtm-flags", "open"),
        ("resolved", "rtm-flags", "resolved"),
    ]


def test_acknowledged_flag_stays_quiet_until_it_worsens(db: Conn, make_patient: MakePatient) -> None:
    p = make_patient(START)
    p.day(D0)
    evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=4)))
    flag_id = p.flag("no_data")["flag_id"]
    assert [f.flag_id for f in open_flags(db, p.clinic_id)] == [flag_id]

    view = acknowledge(db, flag_id, "pt-ana", note="called the patient", clinic_id=p.clinic_id)
    assert (view.state, view.acknowledged_by) == ("acknowledged", "pt-ana")
    assert acknowledge(db, flag_id, "pt-ana").state == "acknowledged"  # idempotent
    assert open_flags(db, p.clinic_id) == []
    assert [f.flag_id for f in open_flags(db, p.clinic_id, include_acknowledged=True)] == [flag_id]

    s = evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=6)))  # still medium
    assert (s.updated, s.realerted) == (1, 0)
    assert p.flag("no_data")["state"] == "acknowledged"

    s = evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=9)))  # high now
    assert s.realerted == 1
    flag = p.flag("no_data")
    assert (flag["state"], flag["severity"]) == ("open", "high")
    assert audit(db, flag_id) == [
        ("raised", "rtm-flags", "open"),
        ("acknowledged", "pt-ana", "acknowledged"),
        ("reopened", "rtm-flags", "open"),
    ]
    assert flag_audit(db, flag_id)[1].note == "called the patient"


def test_condition_returning_soon_reopens_the_same_flag(db: Conn, make_patient: MakePatient) -> None:
    s = FlagSettings(no_data_days=1, no_data_high_days=5)
    p = make_patient(START)
    p.day(D0)
    evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=2)), s)
    flag_id = p.flag("no_data")["flag_id"]
    acknowledge(db, flag_id, "pt-ana")
    p.day(D0 + timedelta(days=2))
    assert evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=2), 21), s).resolved == 1
    back = evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=4)), s)
    assert back.reopened == 1 and back.raised == 0
    flag = p.flag("no_data")
    assert (flag["flag_id"], flag["state"], flag["resolved_at"]) == (flag_id, "acknowledged", None)

    # Without the reopen window, a recurrence is a new flag.
    q = make_patient(START)
    q.day(D0)
    no_window = s.model_copy(update={"reopen_within_hours": 0.0})
    evaluate_patients(db, [q.patient_id], at(D0 + timedelta(days=2)), no_window)
    q.day(D0 + timedelta(days=2))
    evaluate_patients(db, [q.patient_id], at(D0 + timedelta(days=2), 21), no_window)
    assert evaluate_patients(db, [q.patient_id], at(D0 + timedelta(days=4)), no_window).raised == 1
    assert [f["state"] for f in q.flags()] == ["resolved", "open"]


def test_manual_resolution_is_respected_until_worse(db: Conn, make_patient: MakePatient) -> None:
    p = make_patient(START)
    p.day(D0)
    evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=4)))
    flag_id = p.flag("no_data")["flag_id"]
    view = resolve(db, flag_id, "pt-ben", note="patient on holiday")
    assert (view.state, view.resolution, view.resolved_by) == ("resolved", "manual", "pt-ben")
    with pytest.raises(FlagStateError):
        resolve(db, flag_id, "pt-ben")
    with pytest.raises(FlagStateError):
        acknowledge(db, flag_id, "pt-ben")

    s = evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=6)))
    assert (s.suppressed, s.raised) == (1, 0)
    s = evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=9)))  # high: worse than resolved
    assert s.raised == 1
    assert [(f["state"], f["severity"]) for f in p.flags()] == [("resolved", "medium"), ("open", "high")]


def test_daily_timer_raises_no_data_without_new_data(db: Conn, make_patient: MakePatient) -> None:
    p = make_patient(START)
    p.day(D0)
    evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=1)))  # after the last batch: fine
    assert p.flags() == []
    total = evaluate_all(db, at(D0 + timedelta(days=5)))
    assert total.patients >= 1
    assert p.flag("no_data")["evidence"]["days_without_data"] == 4


def test_local_calendar_decides_the_days(db: Conn, make_patient: MakePatient) -> None:
    chicago = make_patient(START)
    tokyo = make_patient(START, tz="Asia/Tokyo")
    for p in (chicago, tokyo):
        p.day(D0)
    as_of = local(D0 + timedelta(days=4), 4, "UTC")  # 22:00 on D0+3 in Chicago, 13:00 on D0+4 in Tokyo
    evaluate_patients(db, [chicago.patient_id, tokyo.patient_id], as_of)
    assert chicago.flags() == []  # 2 complete days
    assert tokyo.flag("no_data")["evidence"]["days_without_data"] == 3


def _regressing_patient(make_patient: MakePatient, end: date) -> Patient:
    p = make_patient(START)
    p.prescribe("knee_extension", per_week=5, sets=2, reps=10)
    rng = np.random.default_rng(9)
    for i in range(20, 0, -1):
        if i % 4 == 0:
            continue  # a rest day now and then
        rom = 100.0 - 0.7 * (20 - i)  # about -5 degrees a week
        p.session(end - timedelta(days=i), list(rom + rng.normal(0, 1.0, 20)))
    return p


def test_rom_regression_and_sudden_drop(db: Conn, make_patient: MakePatient) -> None:
    end = date(2026, 3, 20)
    p = _regressing_patient(make_patient, end)
    s = evaluate_patients(db, [p.patient_id], at(end))
    assert s.by_kind == {"rom_trend": 1}
    flag = p.flag("rom_trend")
    ev = flag["evidence"]["exercises"]["knee_extension"]
    assert flag["severity"] == "high" and ev["status"] == "regressing"
    assert ev["n"] == 15 and ev["mann_kendall"]["p"] < 0.001
    assert ev["slope_deg_per_week"] == pytest.approx(-4.9, abs=1.0)

    # Today's session is far below the last five: a sudden drop on top of the trend. Twelve of its
    # twenty reps are partial, so it is also below the dose, but one session does not make a median.
    p.session(end, [60.0] * 20, hour=10, partial=range(8, 20))
    s = evaluate_patients(db, [p.patient_id], at(end))
    assert s.by_kind == {"rom_drop": 1, "rom_trend": 1}
    drop = p.flag("rom_drop")
    latest = drop["evidence"]["exercises"]["knee_extension"]["latest"]
    assert drop["severity"] == "high" and latest == {"date": end.isoformat(), "rom_deg": 60.0, "reps": 8}


def test_reps_below_dose_counts_full_reps_only(db: Conn, make_patient: MakePatient) -> None:
    end = date(2026, 3, 20)
    p = make_patient(START)
    p.prescribe("knee_extension", per_week=3, sets=2, reps=10)
    for i in (5, 3, 1):
        p.session(end - timedelta(days=i), [90.0] * 14, partial=range(7, 14))  # 7 full of 20
    p.session(end, [])  # ended today, its recording not analysed yet: not judged as zero reps
    evaluate_patients(db, [p.patient_id], at(end))
    flag = p.flag("reps_below_dose")
    assert flag["severity"] == "high" and flag["evidence"]["median_ratio"] == 0.35
    assert [x["reps"] for x in flag["evidence"]["sessions"]] == [7, 7, 7]


def test_adherence_against_the_prescription(db: Conn, make_patient: MakePatient) -> None:
    end = date(2026, 3, 20)
    p = make_patient(START)
    p.prescribe("knee_extension", per_week=5, sets=1, reps=10)
    for i in (9, 8, 6):
        p.session(end - timedelta(days=i), [90.0] * 10, sets=1)
    for i in (5, 4, 3, 2, 1):
        p.day(end - timedelta(days=i))  # worn, steps, but no exercise
    evaluate_patients(db, [p.patient_id], at(end))
    flag = p.flag("adherence_falling")
    assert flag["severity"] == "high"
    ev = flag["evidence"]
    assert (ev["observed_days"], ev["expected_days"], ev["previous_window_observed_days"]) == (1, 5.0, 2)


def test_discharge_resolves_live_flags(db: Conn, make_patient: MakePatient) -> None:
    p = make_patient(START)
    p.day(D0)
    evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=4)))
    p.discharge(D0 + timedelta(days=4))
    assert evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=5))).monitored == 0
    flag = p.flag("no_data")
    assert (flag["state"], flag["resolution"]) == ("resolved", "not_monitored")


def test_review_queue_order_and_clinic_isolation(db: Conn, make_patient: MakePatient) -> None:
    a = make_patient(START)
    b = make_patient(START, clinic_id=a.clinic_id)
    other = make_patient(START)
    for p, last in ((a, D0 + timedelta(days=2)), (b, D0), (other, D0)):
        p.day(last)
    evaluate_patients(db, [a.patient_id, other.patient_id], at(D0 + timedelta(days=6)))  # a: medium
    evaluate_patients(db, [b.patient_id], at(D0 + timedelta(days=9)))  # b: high, raised later
    queue = open_flags(db, a.clinic_id)
    assert [(f.patient_id, f.severity) for f in queue] == [(b.patient_id, "high"), (a.patient_id, "medium")]
    with pytest.raises(FlagNotFound):
        acknowledge(db, other.flag("no_data")["flag_id"], "pt-ana", clinic_id=a.clinic_id)
    assert other.flag("no_data")["state"] == "open"
    with pytest.raises(FlagNotFound):
        resolve(db, 10**12, "pt-ana")


def test_bulk_evaluation_is_deterministic(db: Conn, make_patient: MakePatient) -> None:
    end = date(2026, 3, 20)
    patients = [make_patient(START) for _ in range(12)]
    for n, p in enumerate(patients):
        p.prescribe("knee_extension", per_week=5)
        for i in range(1, 1 + n % 6):
            p.session(end - timedelta(days=i), [80.0 + n] * 20)
    ids = [p.patient_id for p in patients] + ["no-such-patient"]
    first = evaluate_patients(db, ids, at(end))
    assert first.patients == 12 and first.raised > 0
    rows = [p.flags() for p in patients]
    second = evaluate_patients(db, reversed(ids), at(end))
    assert (second.raised, second.updated, second.resolved) == (0, 0, 0)
    assert second.unchanged == first.raised
    assert [p.flags() for p in patients] == rows


def test_least_privilege(db: Conn, db_settings: Settings, make_patient: MakePatient) -> None:
    p = make_patient(START)
    p.day(D0)
    evaluate_patients(db, [p.patient_id], at(D0 + timedelta(days=4)))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("delete from therapist_flags where patient_id = %s", (p.patient_id,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("insert into therapist_flag_audit (flag_id, actor, action, to_state, severity) "
                   "values (1, 'x', 'raised', 'open', 'low')")  # fmt: skip
    with psycopg.connect(db_settings.dsn("reader"), autocommit=True) as reader:
        assert reader.execute("select count(*) from therapist_flags").fetchone()[0] >= 1  # type: ignore[index]
        reader.execute("select count(*) from therapist_flag_audit, exercise_prescriptions")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("update therapist_flags set state = 'resolved'")


def test_inside_the_callers_transaction(db: Conn, db_settings: Settings, make_patient: MakePatient) -> None:
    """The sink may call it in its own transaction: flags commit or roll back with the facts."""
    p = make_patient(START)
    p.day(D0)
    with psycopg.connect(db_settings.dsn("writer")) as conn:
        with conn.transaction(force_rollback=True):
            assert evaluate_patients(conn, [p.patient_id], at(D0 + timedelta(days=4))).raised == 1
        assert p.flags() == []
        with conn.transaction():
            evaluate_patients(conn, [p.patient_id], at(D0 + timedelta(days=4)))
            assert conn.execute("select current_setting('rtm.actor', true)").fetchone() in ((None,), ("",))
    assert p.flag("no_data")["state"] == "open"
