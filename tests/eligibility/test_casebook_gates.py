"""Casebook: gates (consent, plan of care, qualifying device, one practitioner, RPM overlap),
set-up (98975) and episodes, one test per case, through the database."""

from __future__ import annotations

from tests.eligibility.factory import MEDICARE, d, days_from, variant

AS_OF = "2026-05-15"


def test_consent_after_data_began_excludes_earlier_days(scenario):
    # Data 03-01..03-20, consent 03-06 (default consent_before_data = exclude_days): 03-01..03-05 are
    # not counted but still anchor period 0 (03-01..03-30, supply.anchor = first_data_day): 15 days
    # -> 98985.
    s = scenario(consent="2026-03-06T14")
    s.days(days_from("2026-03-01", 20))
    s.compute(AS_OF)
    r = s.supply(0)
    assert (r.period_start, r.data_days, r.codes) == (d("2026-03-01"), 15, ["98985"])
    assert r.gate("consent")["passed"] is True
    assert {x["why"] for x in r.explanation["excluded_days"]} == {"before consent"}


def test_consent_after_data_fails_gate_under_strict_policy(scenario):
    # Same data under consent_before_data = fail: data counted from 03-01 precedes consent (03-06),
    # so the consent gate fails and period 0 gets no code although it has 20 days.
    strict = variant(MEDICARE, "strict-consent", gates={"consent_before_data": "fail"})
    s = scenario(consent="2026-03-06T14", policy="strict-consent")
    s.days(days_from("2026-03-01", 20))
    s.compute(AS_OF, {"strict-consent": strict})
    r = s.supply(0)
    assert r.codes == [] and r.data_days == 20 and r.gate("consent")["passed"] is False


def test_no_consent_no_code(scenario):
    # No consent recorded: every code is gated; the explanation still shows 20 days would reach 98977.
    s = scenario(consent=None)
    s.days(days_from("2026-03-01", 20))
    s.time(25, "2026-03-05")
    s.compute(AS_OF)
    assert s.supply(0).codes == [] and "no consent recorded" in s.supply(0).reason
    assert "98977" in s.supply(0).reason
    assert s.management("2026-03").codes == [] and s.setup().codes == []


def test_no_plan_of_care(scenario):
    # No plan of care: gate plan_of_care fails for supply and management.
    s = scenario(plan_of_care=None)
    s.days(days_from("2026-03-01", 16))
    s.time(25, "2026-03-05")
    s.compute(AS_OF)
    assert s.supply(0).gate("plan_of_care")["passed"] is False and s.supply(0).codes == []
    assert s.management("2026-03").codes == []


def test_plan_of_care_ends_mid_period(scenario):
    # Plan of care 03-01..03-10, data 03-01..03-20: days after 03-10 are outside the plan -> 10 days
    # -> 98985.
    s = scenario(plan_of_care=("2026-03-01", "2026-03-10"))
    s.days(days_from("2026-03-01", 20))
    s.compute(AS_OF)
    assert (s.supply(0).data_days, s.supply(0).codes) == (10, ["98985"])


def test_non_qualifying_device_model(scenario):
    # The only device's model is not a qualifying medical device: gate fails, its days are excluded.
    s = scenario(qualifying_model=False)
    s.days(days_from("2026-03-01", 16))
    s.compute(AS_OF)
    r = s.supply(0) if s.keys("supply") else None
    # No counted day means no anchor, hence no device period: set-up explains instead.
    assert r is None
    assert s.setup().codes == [] and s.setup().gate("qualifying_device")["passed"] is False


def test_no_billing_practitioner(scenario):
    # No billing practitioner on the episode: gate billing_practitioner fails.
    s = scenario(billing=False)
    s.days(days_from("2026-03-01", 16))
    s.compute(AS_OF)
    assert s.supply(0).codes == [] and s.supply(0).gate("billing_practitioner")["passed"] is False


def test_rpm_overlap_period_test_no_overlap(scenario):
    # RPM billed 02-20..03-21; RTM period 0 is 03-22..04-20 (first data 03-22). Period test: the
    # ranges do not overlap -> 98977 stands.
    s = scenario()
    s.rpm("2026-02-20", "2026-03-21")
    s.days(days_from("2026-03-22", 18))
    s.compute(AS_OF)
    assert s.supply(0).codes == ["98977"] and s.supply(0).gate("rpm_overlap")["passed"] is True


def test_rpm_overlap_month_test(scenario):
    # Same data under rpm_overlap_test = month: the period touches March and April, RPM was billed in
    # March -> gate rpm_overlap fails.
    monthly = variant(MEDICARE, "rpm-month", gates={"rpm_overlap_test": "month"})
    s = scenario(policy="rpm-month")
    s.rpm("2026-02-20", "2026-03-21")
    s.days(days_from("2026-03-22", 18))
    s.compute(AS_OF, {"rpm-month": monthly})
    assert s.supply(0).codes == [] and s.supply(0).gate("rpm_overlap")["passed"] is False


def test_rpm_overlapping_period_blocks(scenario):
    # RPM billed 03-25..04-23 overlaps RTM period 0 (03-01..03-30) under the period test -> no 98977;
    # March treatment management is blocked too (RPM in the month).
    s = scenario()
    s.rpm("2026-03-25", "2026-04-23")
    s.days(days_from("2026-03-01", 16))
    s.time(25, "2026-03-05")
    s.compute(AS_OF)
    assert s.supply(0).codes == [] and s.management("2026-03").codes == []


def test_second_episode_bills_on_its_own(scenario):
    # Episode 1 (03-01, discharged 03-20) and episode 2 (04-01, new device): each has its own 98975
    # and its own periods; 16 days in each -> 98977 twice, in different periods.
    s = scenario(discharge="2026-03-20")
    s.days(days_from("2026-03-01", 16))
    ep2 = s.add_episode(start="2026-04-01", consent="2026-04-01T09", plan_of_care=("2026-04-01", None))
    dev2 = s.add_device()
    s.assign(dev2, ep2, "2026-04-01")
    s.days(days_from("2026-04-01", 16), device=dev2)
    s.compute(AS_OF)
    assert s.setup().codes == ["98975"] and s.setup(ep2).codes == ["98975"]
    assert s.supply(0).codes == ["98977"] and s.supply(0, ep2).codes == ["98977"]
    assert s.supply(0, ep2).period_start == d("2026-04-01")


def test_replacement_device_no_second_setup(scenario):
    # Device 1 days 03-01..03-10, replaced by device 2 from 03-11 (days 03-11..03-20): one episode,
    # one 98975, one period with 20 days -> 98977.
    s = scenario()
    s.end_assignment(s.device, "2026-03-11")
    dev2 = s.add_device()
    s.assign(dev2, s.episode, "2026-03-11")
    s.days(days_from("2026-03-01", 10))
    s.days(days_from("2026-03-11", 10), device=dev2)
    s.compute(AS_OF)
    assert s.keys("setup") == [f"setup/{s.episode}"] and s.setup().codes == ["98975"]
    assert (s.supply(0).data_days, s.supply(0).codes) == (20, ["98977"])


def test_one_practitioner_per_period(scenario):
    # Two overlapping episodes billed by different therapists (PT from 03-01, a second PT episode from
    # 03-10 billed by another therapist): the first keeps 98977; the second fails one_practitioner.
    s = scenario()
    s.days(days_from("2026-03-01", 16))
    ep2 = s.add_episode(
        start="2026-03-10", consent="2026-03-10T09", plan_of_care=("2026-03-10", None),
        billing_practitioner=s.other_therapist,
    )  # fmt: skip
    dev2 = s.add_device()
    s.assign(dev2, ep2, "2026-03-10")
    s.days(days_from("2026-03-10", 16), device=dev2)
    s.compute(AS_OF)
    assert s.supply(0).codes == ["98977"]
    second = s.supply(0, ep2)
    assert second.codes == [] and second.gate("one_practitioner")["passed"] is False


def test_unknown_policy(scenario):
    # An episode naming a payer policy that does not exist: one answer saying so, no guess.
    s = scenario(policy="acme-health-2031")
    s.days(days_from("2026-03-01", 16))
    s.compute(AS_OF)
    assert s.setup().codes == [] and s.setup().gate("policy")["passed"] is False
    assert s.keys("supply") == []


def test_setup_two_days(scenario):
    # 98975 needs 2 data days in the first period (medicare-2026): 2 days -> 98975 GP. Its date of
    # service is the set-up date 03-01 only if it was already earned then; the 2nd day is 03-04, so
    # the line is dated 03-04 (never before the day it was earned) and the explanation says why.
    s = scenario()
    s.days(["2026-03-01", "2026-03-04"])
    s.compute(AS_OF)
    r = s.setup()
    assert r.lines == [("98975", 1, ("GP",))] and r.service_date == d("2026-03-04")
    (line,) = r.explanation["lines"]
    assert (line["earned_on"], line["service_date"]) == ("2026-03-04", "2026-03-04")
    assert "not 2026-03-01" in line["why"]


def test_setup_dated_on_setup_day_when_earned_by_then(scenario):
    # Set-up on 03-05 after two data days 03-01, 03-02: earned on 03-02, dated the set-up day 03-05.
    s = scenario()
    s.update_episode(setup_date=d("2026-03-05"))
    s.days(["2026-03-01", "2026-03-02"])
    s.compute(AS_OF)
    assert s.setup().service_date == d("2026-03-05")


def test_setup_one_day(scenario):
    # 1 day in the first period -> no 98975: "1 more for 98975".
    s = scenario()
    s.days(["2026-03-01"])
    s.compute(AS_OF)
    assert s.setup().codes == [] and s.setup().reason.endswith("1 more for 98975")


def test_setup_legacy_needs_sixteen(scenario):
    # legacy-16-day: 98975 needs 16 days; 15 -> nothing ("1 more for 98975").
    s = scenario(policy="legacy-16-day")
    s.days(days_from("2026-03-01", 15))
    s.compute(AS_OF)
    assert s.setup().codes == [] and s.setup().reason.endswith("1 more for 98975")


def test_setup_legacy_sixteen_days(scenario):
    # legacy-16-day with 16 days in the first period -> 98975.
    s = scenario(policy="legacy-16-day")
    s.days(days_from("2026-03-01", 16))
    s.compute(AS_OF)
    assert s.setup().codes == ["98975"]


def test_setup_not_documented(scenario):
    # Set-up and education not documented: gate setup_documented fails.
    s = scenario(setup_documented=False)
    s.days(days_from("2026-03-01", 5))
    s.compute(AS_OF)
    assert s.setup().codes == [] and s.setup().gate("setup_documented")["passed"] is False


def test_setup_by_assistant_gets_cq(scenario):
    # Education logged 10 min by the therapist and 5 min by the PTA (33% > 10%) -> 98975 GP CQ.
    s = scenario()
    s.days(days_from("2026-03-01", 3))
    s.time(10, "2026-03-01", activity="education", channel="in_person")
    s.time(5, "2026-03-01", activity="education", channel="in_person", who=s.assistant, hour=11)
    s.compute(AS_OF)
    assert s.setup().lines == [("98975", 1, ("GP", "CQ"))]
