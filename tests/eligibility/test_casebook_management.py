"""Casebook: treatment management (98979, 98980 + n x 98981) per calendar month, one test per case.

Default: PT episode from 2026-03-01 under medicare-2026; the billing therapist logs the minutes
over video (interactive) unless a case says otherwise; computed as of 2026-05-15. Monitoring is
active in every month (the device sends data on the 2nd of March, April and May) unless a case says
otherwise: medicare-2026 needs a data day in the month (`management.monitoring_active`).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from eligibility.timeentries import Correction, correct_entry, void_entry
from tests.eligibility.factory import LEGACY, MEDICARE, Scenario, d, days_from, variant

AS_OF = "2026-05-15"
MONITORED = ["2026-03-02", "2026-04-02", "2026-05-02"]


@pytest.fixture()
def scenario(scenario: Callable[..., Scenario]) -> Callable[..., Scenario]:
    def make(monitored: bool = True, **kwargs: Any) -> Scenario:
        s = scenario(**kwargs)
        if monitored:
            s.days(MONITORED)
        return s

    return make


def _march(s):
    s.compute(AS_OF)
    return s.management("2026-03")


def test_9_minutes_nothing(scenario):
    # 9 < 10 (short_min_minutes): nothing; 1 more minute reaches 98979.
    s = scenario()
    s.time(9, "2026-03-05")
    r = _march(s)
    assert r.codes == [] and r.reason == "9 minutes: 1 more for 98979"


def test_10_minutes_98979(scenario):
    # 10 minutes with a video call -> 98979 x1 with GP.
    s = scenario()
    s.time(10, "2026-03-05")
    assert _march(s).lines == [("98979", 1, ("GP",))]


def test_19_minutes_98979(scenario):
    # 19 is the top of 10-19 -> 98979; 1 more for 98980.
    s = scenario()
    s.time(19, "2026-03-05")
    r = _march(s)
    assert r.codes == ["98979"] and r.reason.endswith("1 more for 98980")


def test_20_minutes_98980(scenario):
    # 20 minutes -> 98980 x1 and never 98979 with it.
    s = scenario()
    s.time(12, "2026-03-05")
    s.time(8, "2026-03-12", channel="none", activity="data_review")
    assert _march(s).lines == [("98980", 1, ("GP",))]


def test_39_minutes_no_addon(scenario):
    # 39: 98980; the extra 19 minutes are not a full 20 -> no 98981 (1 more for another).
    s = scenario()
    s.time(39, "2026-03-05")
    r = _march(s)
    assert r.lines == [("98980", 1, ("GP",))] and r.reason.endswith("1 more for another 98981")


def test_40_minutes_one_addon(scenario):
    # 40: 98980 + 98981 x floor((40-20)/20) = 1.
    s = scenario()
    s.time(40, "2026-03-05")
    assert _march(s).lines == [("98980", 1, ("GP",)), ("98981", 1, ("GP",))]


def test_60_minutes_two_addons(scenario):
    # 60: 98980 + 98981 x floor(40/20) = 2 units.
    s = scenario()
    s.time(30, "2026-03-05")
    s.time(30, "2026-03-19", channel="audio")
    assert _march(s).lines == [("98980", 1, ("GP",)), ("98981", 2, ("GP",))]


def test_no_interactive_contact(scenario):
    # 25 minutes of data review only: minutes suffice but no real-time contact -> nothing.
    s = scenario()
    s.time(25, "2026-03-05", channel="none", activity="data_review")
    r = _march(s)
    assert r.codes == [] and r.reason.startswith("no interactive contact in the month")


def test_secure_message_not_interactive_by_default(scenario):
    # medicare-2026: secure_message_counts = false. 15 min review + 10 min secure messaging = 25 min,
    # no interactive contact -> nothing, and the reason names secure messages.
    s = scenario()
    s.time(15, "2026-03-05", channel="none", activity="data_review")
    s.time(10, "2026-03-06", channel="secure_message")
    r = _march(s)
    assert r.codes == [] and "secure messages do not count" in r.reason


def test_secure_message_interactive_when_policy_allows(scenario):
    # The same month under a payer whose policy counts secure messaging -> 98980.
    lenient = variant(MEDICARE, "sm-payer", interactive={"secure_message_counts": True})
    s = scenario(policy="sm-payer")
    s.time(15, "2026-03-05", channel="none", activity="data_review")
    s.time(10, "2026-03-06", channel="secure_message")
    s.compute(AS_OF, {"sm-payer": lenient})
    assert s.management("2026-03").codes == ["98980"]


def test_assistant_exactly_ten_percent(scenario):
    # Therapist 36 + PTA 4 = 40 minutes; 4/40 = 10% is not MORE than 10% -> no CQ.
    s = scenario()
    s.time(36, "2026-03-05")
    s.time(4, "2026-03-06", who=s.assistant, channel="none", activity="data_review")
    assert _march(s).lines == [("98980", 1, ("GP",)), ("98981", 1, ("GP",))]


def test_assistant_just_above_ten_percent(scenario):
    # Therapist 35.99 + PTA 4.01 = 40.00; 4.01/40 = 10.025% > 10% -> CQ on 98980 and 98981.
    s = scenario()
    s.time("35.99", "2026-03-05")
    s.time("4.01", "2026-03-06", who=s.assistant, channel="none", activity="data_review")
    assert _march(s).lines == [("98980", 1, ("GP", "CQ")), ("98981", 1, ("GP", "CQ"))]


def test_ot_assistant_gets_co(scenario):
    # OT episode: discipline modifier GO; OTA furnished 10 of 25 minutes (40%) -> CO.
    s = scenario(discipline="OT")
    s.time(15, "2026-03-05")
    s.time(10, "2026-03-06", who=s.assistant)
    assert _march(s).lines == [("98980", 1, ("GO", "CO"))]


def test_slp_gets_gn_and_no_assistant_modifier(scenario):
    # SLP episode: GN; the policy defines no assistant modifier for SLP, so none is added.
    s = scenario(discipline="SLP")
    s.time(15, "2026-03-05")
    s.time(10, "2026-03-06", who=s.assistant)
    assert _march(s).lines == [("98980", 1, ("GN",))]


def test_assistant_modifier_never_on_supply(scenario):
    # PTA furnished 50% of the month's minutes: CQ on 98980, but the supply code 98977 carries GP only.
    s = scenario()
    s.days(days_from("2026-03-01", 16))
    s.time(10, "2026-03-05")
    s.time(10, "2026-03-06", who=s.assistant)
    s.compute(AS_OF)
    assert s.management("2026-03").lines == [("98980", 1, ("GP", "CQ"))]
    assert s.supply(0).lines == [("98977", 1, ("GP",))]


def test_assistant_of_other_discipline_excluded(scenario):
    # An OTA's 10 minutes on a PT episode do not count: 12 therapist minutes only -> 98979.
    s = scenario()
    s.time(12, "2026-03-05")
    s.time(10, "2026-03-06", who=s.ot_assistant)
    r = _march(s)
    assert r.codes == ["98979"] and r.minutes == Decimal("12.00")
    assert "does not match" in r.explanation["excluded_entries"][0]["why"]


def test_other_therapist_not_billing_excluded(scenario):
    # A second PT who is not the episode's billing practitioner: their 15 minutes do not count.
    s = scenario()
    s.time(10, "2026-03-05")
    s.time(15, "2026-03-06", who=s.other_therapist)
    r = _march(s)
    assert r.codes == ["98979"] and "not the episode's billing practitioner" in str(r.explanation)


def test_physician_minutes_count(scenario):
    # A physician is an eligible person: 10 therapist + 12 physician = 22 -> 98980.
    s = scenario()
    s.time(10, "2026-03-05")
    s.time(12, "2026-03-06", who=s.physician, channel="none", activity="data_review")
    assert _march(s).codes == ["98980"]


def test_minutes_counted_toward_other_service_excluded(scenario):
    # 15 minutes already counted toward another billed service (e.g. a 97110 visit) never count
    # here: 10 remain -> 98979.
    s = scenario()
    s.time(10, "2026-03-05")
    s.time(15, "2026-03-06", other_service="97110")
    r = _march(s)
    assert r.codes == ["98979"] and r.minutes == Decimal("10.00")


def test_correction_replaces_entry(scenario):
    # 25 minutes corrected to 15: only the correction counts (15, not 40) -> 98979; the original is
    # listed as superseded.
    s = scenario()
    entry = s.time(25, "2026-03-05")
    fixed = correct_entry(s.conn, entry, Correction(reason="logged the wrong duration", minutes=Decimal(15)))
    r = _march(s)
    assert r.codes == ["98979"] and r.minutes == Decimal("15.00")
    why = f"superseded by correction {fixed.entry_id}"
    assert {"entry": entry, "why": why} in r.explanation["excluded_entries"]


def test_void_removes_entry(scenario):
    # A 25-minute entry voided as logged in error; 12 remain -> 98979.
    s = scenario()
    wrong = s.time(25, "2026-03-05")
    s.time(12, "2026-03-06")
    void_entry(s.conn, wrong, "wrong patient")
    assert _march(s).codes == ["98979"]


def test_retried_entry_counts_once(scenario):
    # The same entry sent twice (same entry_id, e.g. a retry): stored once, 15 minutes -> 98979.
    s = scenario()
    s.time(15, "2026-03-05", entry_id=f"retry-{s.tag}")
    s.time(15, "2026-03-05", entry_id=f"retry-{s.tag}")
    r = _march(s)
    assert r.codes == ["98979"] and r.minutes == Decimal("15.00")


def test_overlapping_entries_count_once(scenario):
    # One therapist logs 10:00-10:20 and 10:10-10:30: the union is 30 minutes, not 40 -> 98980 without
    # 98981.
    s = scenario()
    s.time(20, "2026-03-05", hour=10, minute=0)
    s.time(20, "2026-03-05", hour=10, minute=10)
    r = _march(s)
    assert r.minutes == Decimal("30.00") and r.lines == [("98980", 1, ("GP",))]


def test_months_are_independent(scenario):
    # 15 minutes on 03-31 and 15 on 04-01: two calendar months, 98979 in each, never 98980.
    s = scenario()
    s.time(15, "2026-03-31")
    s.time(15, "2026-04-01")
    s.compute(AS_OF)
    assert s.management("2026-03").codes == ["98979"]
    assert s.management("2026-04").codes == ["98979"]


def test_date_of_service_is_threshold_day(scenario):
    # 10 min on 03-03 and 15 on 03-20 (both video): 20 minutes reached on 03-20 -> date of service 03-20.
    s = scenario()
    s.time(10, "2026-03-03")
    s.time(15, "2026-03-20")
    r = _march(s)
    assert r.codes == ["98980"] and r.service_date == d("2026-03-20")


def test_threshold_waits_for_interactive_contact(scenario):
    # 25 min review on 03-03, then a 5-minute video call on 03-25: 30 minutes, but the code is only
    # reached when the interactive contact happens -> date of service 03-25.
    s = scenario()
    s.time(25, "2026-03-03", channel="none", activity="data_review")
    s.time(5, "2026-03-25")
    r = _march(s)
    assert r.codes == ["98980"] and r.service_date == d("2026-03-25")


def test_entry_dated_in_patient_local_time(scenario):
    # 2026-04-01 01:30 UTC is 03-31 21:30 in New York: the 12 minutes belong to March.
    s = scenario()
    s.time(12, "2026-03-31", hour=21, minute=30)
    s.compute(AS_OF)
    assert s.management("2026-03").codes == ["98979"]
    assert s.management("2026-04").minutes == Decimal("0.00")


def test_legacy_has_no_10_minute_code(scenario):
    # legacy-16-day has no 98979: 15 minutes -> nothing, 5 more for 98980.
    s = scenario(policy="legacy-16-day")
    s.time(15, "2026-03-05")
    r = _march(s)
    assert r.codes == [] and r.reason == "15 minutes: 5 more for 98980"
    assert LEGACY.management.short_code is None


def test_legacy_45_minutes(scenario):
    # legacy-16-day, 45 minutes: 98980 + 98981 x1 (floor(25/20)).
    s = scenario(policy="legacy-16-day")
    s.time(45, "2026-03-05")
    assert _march(s).lines == [("98980", 1, ("GP",)), ("98981", 1, ("GP",))]
