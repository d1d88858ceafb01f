"""Casebook: device supply (98976-98978, 98984-98986), one test per case, through the database.

Unless a case says otherwise: PT episode from 2026-03-01 under medicare-2026, one qualifying
device assigned from that day, consent/set-up/plan of care on day one, America/New_York, and the
anchor is the first counted data day, so period 0 runs 2026-03-01..2026-03-30.
"""

from __future__ import annotations

from tests.eligibility.factory import MEDICARE, d, days_from, variant

AS_OF = "2026-05-15"


def test_one_data_day_reaches_nothing(scenario):
    # 1 data day < 2 (short_min_days): no supply code; one more day would reach 98985.
    s = scenario()
    s.days(["2026-03-01"])
    s.compute(AS_OF)
    r = s.supply(0)
    assert r.codes == []
    assert r.reason == "1 data day: 1 more for 98985"


def test_two_data_days_reach_98985(scenario):
    # 2 days = the floor of 2-15 -> 98985 x1, GP (PT discipline), date of service = period end 03-30.
    s = scenario()
    s.days(["2026-03-01", "2026-03-29"])
    s.compute(AS_OF)
    r = s.supply(0)
    assert r.lines == [("98985", 1, ("GP",))]
    assert r.service_date == d("2026-03-30")


def test_fourteen_days_says_two_more_for_98977(scenario):
    # 14 days -> 98985 (2-15) and the explanation names the distance to 98977: 16 - 14 = 2.
    s = scenario()
    s.days(days_from("2026-03-01", 14, step=2))
    s.compute(AS_OF)
    r = s.supply(0)
    assert r.codes == ["98985"]
    assert r.reason == "14 data days: 98985 (2-15 days); 2 more for 98977"


def test_fifteen_days_still_short_code(scenario):
    # 15 days is the top of 2-15 -> 98985, one day short of 98977.
    s = scenario()
    s.days(days_from("2026-03-01", 15))
    s.compute(AS_OF)
    r = s.supply(0)
    assert r.codes == ["98985"] and r.data_days == 15
    assert "1 more for 98977" in r.reason


def test_sixteen_days_reach_98977(scenario):
    # 16 days -> 98977 x1 (never also 98985: one supply code per period).
    s = scenario()
    s.days(days_from("2026-03-01", 16))
    s.compute(AS_OF)
    r = s.supply(0)
    assert r.lines == [("98977", 1, ("GP",))]


def test_thirty_days_still_one_unit(scenario):
    # Every day of the 30-day period: still 98977 x1; day 31 (03-31) belongs to period 1.
    s = scenario()
    s.days(days_from("2026-03-01", 31))
    s.compute(AS_OF)
    assert s.supply(0).lines == [("98977", 1, ("GP",))]
    assert s.supply(0).data_days == 30
    assert s.supply(1).data_days == 1 and s.supply(1).period_start == d("2026-03-31")


def test_period_crossing_month_end(scenario):
    # First data 03-20 -> period 0 is 03-20..04-18. 12 March days + 4 April days = 16 -> 98977,
    # date of service 04-18 (period end), so it bills in April.
    s = scenario()
    s.days(days_from("2026-03-20", 16))
    s.compute(AS_OF)
    r = s.supply(0)
    assert (r.period_start, r.period_end) == (d("2026-03-20"), d("2026-04-18"))
    assert r.codes == ["98977"] and r.service_date == d("2026-04-18")


def test_days_never_carry_over(scenario):
    # 20 days in period 0 do not help period 1: 03-31 alone is 1 day there -> nothing.
    s = scenario()
    s.days([*days_from("2026-03-01", 20), d("2026-03-31")])
    s.compute(AS_OF)
    assert s.supply(0).codes == ["98977"]
    assert s.supply(1).codes == [] and s.supply(1).data_days == 1


def test_window_never_shifted_to_reach_threshold(scenario):
    # Data 03-01 and 03-17..04-01. A window 03-17..04-15 would hold 16 days, but periods are back to
    # back from the anchor 03-01: period 0 has 1 + 14 = 15 (98985), period 1 has 03-31, 04-01 = 2 (98985).
    s = scenario()
    s.days([d("2026-03-01"), *days_from("2026-03-17", 16)])
    s.compute(AS_OF)
    assert (s.supply(0).data_days, s.supply(0).codes) == (15, ["98985"])
    assert (s.supply(1).data_days, s.supply(1).codes) == (2, ["98985"])


def test_two_devices_one_day_counts_once(scenario):
    # Device A 03-01..03-10, device B 03-05..03-16 (both assigned): distinct dates 03-01..03-16 = 16
    # -> 98977; 03-05..03-10 list both devices but count once each.
    s = scenario()
    b = s.add_device()
    s.assign(b, s.episode, "2026-03-01")
    s.days(days_from("2026-03-01", 10))
    s.days(days_from("2026-03-05", 12), device=b)
    s.compute(AS_OF)
    r = s.supply(0)
    assert r.data_days == 16 and r.codes == ["98977"]
    day = next(x for x in r.explanation["days"] if x["date"] == "2026-03-05")
    assert sorted(day["devices"]) == sorted([s.device, b]) and len(day["records"]) == 2


def test_two_devices_same_eight_days_are_eight_days(scenario):
    # Two devices on the same 8 dates: 8 data days, not 16 -> 98985.
    s = scenario()
    b = s.add_device()
    s.assign(b, s.episode, "2026-03-01")
    s.days(days_from("2026-03-01", 8))
    s.days(days_from("2026-03-01", 8), device=b)
    s.compute(AS_OF)
    assert (s.supply(0).data_days, s.supply(0).codes) == (8, ["98985"])


def test_non_qualifying_rows_do_not_count(scenario):
    # 16 rows, 2 of them failed validation (qualifying = false): 14 data days -> 98985; the two
    # are listed as excluded with the reason.
    s = scenario()
    s.days(days_from("2026-03-01", 14))
    s.days(["2026-03-20", "2026-03-21"], qualifying=False)
    s.compute(AS_OF)
    r = s.supply(0)
    assert (r.data_days, r.codes) == (14, ["98985"])
    assert {x["why"] for x in r.explanation["excluded_days"]} == {"no qualifying data point"}


def test_device_unassigned_midway(scenario):
    # The device's assignment ends 03-11 00:00 local: its data on 03-11..03-20 is not this
    # episode's; 03-01..03-10 = 10 days -> 98985.
    s = scenario()
    s.end_assignment(s.device, "2026-03-11")
    s.days(days_from("2026-03-01", 20))
    s.compute(AS_OF)
    assert (s.supply(0).data_days, s.supply(0).codes) == (10, ["98985"])


def test_discharge_mid_period_cuts_the_period(scenario):
    # Discharge 03-12: period 0 is cut to 03-01..03-12 (12 days -> 98985, date of service 03-12);
    # data after discharge is outside the episode; no period 1.
    s = scenario(discharge="2026-03-12")
    s.days(days_from("2026-03-01", 20))
    s.compute(AS_OF)
    r = s.supply(0)
    assert (r.period_end, r.data_days, r.codes) == (d("2026-03-12"), 12, ["98985"])
    assert r.service_date == d("2026-03-12")
    assert r.explanation["period"]["cut_by_discharge"] is True
    assert s.keys("supply") == [f"supply/{s.episode}/0"]


def test_discharge_cut_period_not_billable_when_policy_says_so(scenario):
    # Same as above under a policy with bill_period_cut_by_discharge = false: gate full_period fails.
    strict = variant(MEDICARE, "strict-cut", supply={"bill_period_cut_by_discharge": False})
    s = scenario(discharge="2026-03-12", policy="strict-cut")
    s.days(days_from("2026-03-01", 12))
    s.compute(AS_OF, {"strict-cut": strict})
    r = s.supply(0)
    assert r.codes == [] and r.gate("full_period")["passed"] is False


def test_discharge_in_second_period(scenario):
    # Data 03-01..03-20 and 04-01..04-05, discharge 04-05: period 0 (20 days) -> 98977; period 1 is
    # 03-31..04-05 with 5 days -> 98985.
    s = scenario(discharge="2026-04-05")
    s.days(days_from("2026-03-01", 20) + days_from("2026-04-01", 5))
    s.compute(AS_OF)
    assert s.supply(0).codes == ["98977"]
    last = s.supply(1)
    assert (last.period_end, last.data_days, last.codes) == (d("2026-04-05"), 5, ["98985"])


def test_respiratory_codes(scenario):
    # Respiratory episode: 16+ days -> 98976 (its 16-30 code).
    s = scenario(category="respiratory")
    s.days(days_from("2026-03-01", 16))
    s.compute(AS_OF)
    assert s.supply(0).codes == ["98976"]


def test_respiratory_short_code(scenario):
    # Respiratory with 5 days -> 98984 (2-15), never together with 98976.
    s = scenario(category="respiratory")
    s.days(days_from("2026-03-01", 5))
    s.compute(AS_OF)
    assert s.supply(0).codes == ["98984"]


def test_cbt_short_code_not_recognised_by_medicare(scenario):
    # CBT with 5 days would be 98986, whose Medicare status is unclear: medicare-2026 sets
    # recognised = false, so no code, and the reason says so.
    s = scenario(category="cbt")
    s.days(days_from("2026-03-01", 5))
    s.compute(AS_OF)
    r = s.supply(0)
    assert r.codes == [] and "98986 is not recognised by medicare-2026" in r.reason


def test_cbt_long_code(scenario):
    # CBT with 16 days -> 98978 (contractor-priced, recognised).
    s = scenario(category="cbt")
    s.days(days_from("2026-03-01", 16))
    s.compute(AS_OF)
    assert s.supply(0).codes == ["98978"]


def test_legacy_fifteen_days_nothing(scenario):
    # legacy-16-day has no 2-15 codes: 15 days -> nothing, "1 more for 98977".
    s = scenario(policy="legacy-16-day")
    s.days(days_from("2026-03-01", 15))
    s.compute(AS_OF)
    r = s.supply(0)
    assert r.codes == [] and r.reason == "15 data days: 1 more for 98977"


def test_legacy_sixteen_days(scenario):
    # legacy-16-day with 16 days -> 98977, tagged with the legacy policy version.
    s = scenario(policy="legacy-16-day")
    s.days(days_from("2026-03-01", 16))
    s.compute(AS_OF)
    r = s.supply(0)
    assert r.codes == ["98977"] and r.explanation["policy"] == {"id": "legacy-16-day", "version": "2025.3"}


def test_anchor_first_data_day(scenario):
    # Set-up 03-01 but first data 03-20 (16 days to 04-04): anchored on the first data day the
    # period is 03-20..04-18 and holds all 16 -> 98977.
    s = scenario()
    s.days(days_from("2026-03-20", 16))
    s.compute(AS_OF)
    assert (s.supply(0).period_start, s.supply(0).codes) == (d("2026-03-20"), ["98977"])


def test_anchor_setup_date(scenario):
    # Same data, policy anchored on the set-up date 03-01: period 0 (03-01..03-30) holds 03-20..03-30
    # = 11 days -> 98985; period 1 (03-31..04-29) holds 03-31..04-04 = 5 -> 98985.
    anchored = variant(MEDICARE, "anchored", supply={"anchor": "setup_date"})
    s = scenario(policy="anchored")
    s.days(days_from("2026-03-20", 16))
    s.compute(AS_OF, {"anchored": anchored})
    assert (s.supply(0).data_days, s.supply(0).codes) == (11, ["98985"])
    assert (s.supply(1).data_days, s.supply(1).codes) == (5, ["98985"])


def test_period_after_data_stops(scenario):
    # Data 03-01..03-16 only, as of 05-15: period 1 (03-31..04-29) has 0 days -> nothing, "2 more for
    # 98985"; period 2 (04-30..05-29) is still open (provisional).
    s = scenario()
    s.days(days_from("2026-03-01", 16))
    s.compute(AS_OF)
    assert s.supply(1).reason == "0 data days: 2 more for 98985"
    assert s.supply(2).status == "provisional"
