"""Casebook: patient-local days across DST changes and a move, built the way the processors do
(samples at UTC instants -> the local date in force at that instant), one test per case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

AS_OF = "2026-12-15"


def _daily(first: str, n: int, hour: int, minute: int) -> list[datetime]:
    start = datetime.fromisoformat(first).replace(hour=hour, minute=minute, tzinfo=UTC)
    return [start + timedelta(days=i) for i in range(n)]


def test_dst_spring_forward(scenario):
    # New York moves to EDT on 03-08 at 07:00 UTC. A sample every day at 04:30 UTC, 03-01..03-16:
    # before the change 04:30Z is 23:30 EST the previous day; after it, 00:30 EDT the same day.
    # Local dates: 02-28 (before the device was assigned: not this episode's), 03-01..03-07, then
    # 03-09..03-16: 03-08 has no sample. 7 + 8 = 15 days -> 98985 (a UTC count would say 16 -> 98977).
    s = scenario()
    s.samples(_daily("2026-03-01", 16, 4, 30))
    s.compute("2026-05-15")
    r = s.supply(0)
    assert (r.data_days, r.codes) == (15, ["98985"])
    assert "2026-03-08" not in r.day_list


def test_dst_fall_back(scenario):
    # New York returns to EST on 11-01 at 06:00 UTC. Samples at 04:30 UTC, 10-20..11-04: until 11-01
    # they are 00:30 EDT the same day; from 11-02 they are 23:30 EST the day before, so 11-01 gets two
    # samples. 16 instants -> 15 local dates (10-20..11-03) -> 98985.
    s = scenario(start="2026-10-20", consent="2026-10-20T09", plan_of_care=("2026-10-20", None))
    s.samples(_daily("2026-10-20", 16, 4, 30))
    s.compute(AS_OF)
    r = s.supply(0)
    assert (r.data_days, r.codes) == (15, ["98985"])
    nov1 = next(x for x in r.explanation["days"] if x["date"] == "2026-11-01")
    assert len(nov1["records"][0]) == 2  # both samples behind the one day


def test_patient_moves_time_zone(scenario):
    # New York until 03-10 16:00 UTC, then Los Angeles. Samples at 06:30 UTC, 03-01..03-16: through
    # 03-10 they fall on 03-01..03-10 New York time; from 03-11 they are 23:30 PDT the previous day
    # (03-10..03-15). 03-10 is hit twice. Distinct local dates 03-01..03-15 = 15 -> 98985.
    s = scenario()
    s.move_to("America/Los_Angeles", "2026-03-10T16:00+00:00")
    s.samples(_daily("2026-03-01", 16, 6, 30))
    s.compute("2026-05-15")
    r = s.supply(0)
    assert (r.data_days, r.codes) == (15, ["98985"])
    assert r.day_list[-1] == "2026-03-15"


def test_time_entry_after_move_dated_in_new_zone(scenario):
    # The patient moved to Los Angeles on 03-15. 12 minutes at 2026-04-01 05:00 UTC are 03-31 22:00
    # PDT (in New York it would already be April): they count for March -> 98979 there.
    s = scenario()
    s.move_to("America/Los_Angeles", "2026-03-15T12:00+00:00")
    s.days(["2026-03-02"])  # monitoring active in March
    s.time(12, "2026-03-31", hour=22, minute=0)  # local() uses the scenario zone: shift below
    s.conn.execute(
        "update therapist_time_entries set started_at = %s where patient_id = %s",
        (datetime(2026, 4, 1, 5, 0, tzinfo=UTC), s.patient),
    )
    s.compute("2026-05-15")
    assert s.management("2026-03").codes == ["98979"]
    assert s.management("2026-04").minutes == Decimal("0.00")
