"""The one data-day rule (`processors/dayfacts.py`) on the five inputs readers disagree on, each on
the database through the real rebuild, under the shipped policy's `[data_day]` defaults and with
the setting that decides it flipped."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest

from eligibility.policy import DataDayRule, load_policy
from processors.activity import recompute_minutes
from processors.dayfacts import DayChange, patient_rules, rebuild_day_facts
from processors.sink.raw import ChangedSpan
from rtm.db import Conn

pytestmark = pytest.mark.integration

ZONE = "America/New_York"  # EDT in June: local = UTC - 4 h
DEVICE = "dev-rule"
DAY = date(2026, 6, 16)  # the disputed day
DEFAULT = load_policy("medicare-2026").data_day


def local(d: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(d.year, d.month, d.day, hour, minute, second, tzinfo=UTC) + timedelta(hours=4)


def patient(owner: Conn, zone_from: datetime = datetime(2026, 3, 1, tzinfo=UTC)) -> str:
    pid = f"p-rule-{uuid.uuid4().hex[:8]}"
    owner.execute("insert into clinics (clinic_id, name) values ('c-rule', 'rule') on conflict do nothing")
    owner.execute("insert into patients (patient_id, clinic_id) values (%s, 'c-rule')", (pid,))
    owner.execute("insert into patient_timezones (patient_id, effective_from, tz) values (%s, %s, %s)",
                  (pid, zone_from, ZONE))
    return pid


def step_record(owner: Conn, writer: Conn, pid: str, start: datetime, end: datetime, steps: int) -> None:
    """A vendor step record, apportioned to minutes by the processors' own code."""
    owner.execute(
        """insert into activity_intervals (time, end_time, event_id, patient_id, device_id, source, steps, provenance)
           values (%s, %s, %s, %s, %s, 'health_connect', %s, %s)""",
        (start, end, uuid.uuid4(), pid, DEVICE, steps, orjson.dumps({"adapter": "test"}).decode()))
    recompute_minutes(writer, [ChangedSpan(pid, DEVICE, start, end)], active_cadence_spm=100)


def exercise_set(owner: Conn, pid: str, at: datetime, reps: int) -> None:
    owner.execute(
        """insert into exercise_sets (time, set_id, patient_id, device_id, stream_id, end_time, rep_count,
                                      algorithm_version) values (%s, %s, %s, %s, 's', %s, %s, 'test')""",
        (at, uuid.uuid4(), pid, DEVICE, at + timedelta(minutes=2), reps))


def facts(writer: Conn, pid: str, rule: DataDayRule) -> dict[date, tuple[bool, int, int]]:
    """Rebuild the patient's June and read back {local date: (qualifying, exercise sets, steps)}."""
    rebuild_day_facts(writer, [DayChange(pid, datetime(2026, 6, 10, tzinfo=UTC), datetime(2026, 6, 22, tzinfo=UTC))],
                      rule)
    rows = writer.execute("select local_date, qualifying, exercise_sets, steps from data_day_facts "
                          "where patient_id = %s order by local_date", (pid,)).fetchall()
    return {d: (q, s, n) for d, q, s, n in rows}


def flipped(**change: object) -> DataDayRule:
    return DEFAULT.model_copy(update=change)


def zero_step_record(owner: Conn, writer: Conn) -> str:
    pid = patient(owner)
    step_record(owner, writer, pid, local(DAY, 10), local(DAY, 10, 30), 0)
    return pid


def zero_rep_set(owner: Conn, writer: Conn) -> str:
    pid = patient(owner)
    exercise_set(owner, pid, local(DAY, 10), 0)
    return pid


def steps_across_midnight(owner: Conn, writer: Conn) -> str:
    pid = patient(owner)
    step_record(owner, writer, pid, local(DAY - timedelta(days=1), 23, 50), local(DAY, 0, 0, 30), 10)
    return pid


def unworn_minute(owner: Conn, writer: Conn) -> str:
    pid = patient(owner)
    writer.execute("""insert into activity_minutes (time, patient_id, device_id, steps, active, worn, method)
                      values (%s, %s, %s, 50, false, false, 'imu')""", (local(DAY, 14), pid, DEVICE))
    return pid


Case = Callable[[Conn, Conn], str]


@pytest.mark.parametrize(("make", "setting", "value"), [
    (zero_step_record, "zero_step_records", True),
    (zero_rep_set, "zero_rep_sets", True),
    (steps_across_midnight, "split_minute", "record_steps"),
    (unworn_minute, "unworn_minutes", True),
])
def test_disputed_input_makes_a_day_only_when_the_policy_says_so(
        owner_db: Conn, db: Conn, make: Case, setting: str, value: object) -> None:
    pid = make(owner_db, db)
    before = facts(db, pid, DEFAULT)
    assert not before.get(DAY, (False, 0, 0))[0], f"{make.__name__} made a data day under the defaults"
    after = facts(db, pid, flipped(**{setting: value}))
    assert after[DAY][0], f"{make.__name__} made no data day with {setting} = {value!r}"


def test_the_midnight_record_keeps_its_steps_on_the_day_before(owner_db: Conn, db: Conn) -> None:
    pid = steps_across_midnight(owner_db, db)
    got = facts(db, pid, DEFAULT)
    # 10 steps over 10.5 minutes: whole-step shares give the half minute past midnight 0
    assert got[DAY - timedelta(days=1)] == (True, 0, 10)
    assert got[DAY] == (False, 0, 0)


def test_unworn_steps_stay_stored_but_do_not_qualify(owner_db: Conn, db: Conn) -> None:
    pid = unworn_minute(owner_db, db)
    assert facts(db, pid, DEFAULT)[DAY] == (False, 0, 50)


def test_zero_rep_set_is_counted_as_a_set_only_when_allowed(owner_db: Conn, db: Conn) -> None:
    pid = zero_rep_set(owner_db, db)
    assert DAY not in facts(db, pid, DEFAULT)
    assert facts(db, pid, flipped(zero_rep_sets=True))[DAY] == (True, 1, 0)


@pytest.mark.parametrize(("before_first_zone", "dated"), [
    ("first_zone", DAY),  # 22:00 EDT on the 16th
    ("utc", DAY + timedelta(days=1)),  # 02:00 UTC on the 17th
    ("exclude", None),
])
def test_data_before_the_first_zone(owner_db: Conn, db: Conn, before_first_zone: str, dated: date | None) -> None:
    pid = patient(owner_db, zone_from=datetime(2026, 6, 18, tzinfo=UTC))
    exercise_set(owner_db, pid, local(DAY, 22), 8)
    got = facts(db, pid, flipped(before_first_zone=before_first_zone))
    assert sorted(got) == ([dated] if dated else [])
    if dated:
        assert got[dated] == (True, 1, 0)


def test_each_patient_gets_the_rule_of_their_latest_episodes_policy(owner_db: Conn, db: Conn) -> None:
    """Without an override the rebuild reads the `[data_day]` of the policy of the patient's latest
    episode; without an episode, or with an unknown policy, the default policy's."""
    legacy, default = load_policy("legacy-16-day").data_day, load_policy("medicare-2026").data_day
    on_legacy, unknown, none = patient(owner_db), patient(owner_db), patient(owner_db)
    for pid, policy, start in ((on_legacy, "medicare-2026", "2026-01-01"), (on_legacy, "legacy-16-day", "2026-03-01"),
                               (unknown, "no-such-policy", "2026-03-01")):
        owner_db.execute("""insert into episodes (episode_id, patient_id, clinic_id, payer_policy, discipline,
                                                  start_date) values (%s, %s, 'c-rule', %s, 'PT', %s)""",
                         (f"e-{pid}-{policy}", pid, policy, start))
    rules = patient_rules(db, [on_legacy, unknown, none])
    assert rules[on_legacy] is legacy and rules[unknown] is default and rules[none] is default
    # and the rebuild applies it: the 0-step record makes no day under the shipped rule
    step_record(owner_db, db, on_legacy, local(DAY, 10), local(DAY, 10, 30), 0)
    assert not facts(db, on_legacy, None)[DAY][0]
