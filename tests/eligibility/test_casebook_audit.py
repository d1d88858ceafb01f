"""Casebook: what an auditor pushes back on, line by line. Each claim line is dated no earlier than
the day it was earned; where the device periods start; when monitoring counts as active in a month;
late data within the grace and after release. One test per case, through the database.

Default: PT episode from 2026-03-01 under medicare-2026 (consent, set-up, plan of care on 03-01).
"""

from __future__ import annotations

from eligibility import billing
from tests.eligibility.factory import MEDICARE, d, days_from, variant

AS_OF = "2026-05-15"


def _dates(row):
    return [(c["code"], c["service_date"]) for c in row.answer["codes"]]


# ------------------------------------------------------------------ date of service, per line ----


def test_addon_and_cq_dated_on_or_after_the_minutes_that_earned_them(scenario):
    # 20 therapist minutes (video) on 03-05 reach 98980; on 03-09 10 therapist + 10 assistant minutes
    # make 40 (98981) and an assistant share of 25% (> 10%: CQ). Before: every line dated 03-05, two
    # days... four days before the minutes behind 98981 and CQ existed. Now: 98980-CQ is dated 03-09
    # (CQ settled then) and 98981 03-09 (its 40th minute); the explanation says why for each line.
    s = scenario()
    s.days(["2026-03-02"])
    s.time(20, "2026-03-05")
    s.time(10, "2026-03-09")
    s.time(10, "2026-03-09", who=s.assistant, hour=11)
    s.compute(AS_OF)
    r = s.management("2026-03")
    assert r.lines == [("98980", 1, ("GP", "CQ")), ("98981", 1, ("GP", "CQ"))]
    assert _dates(r) == [("98980", "2026-03-09"), ("98981", "2026-03-09")]
    first, addon = r.explanation["lines"]
    assert first["earned_on"] == "2026-03-09" and "CQ settled on 2026-03-09" in first["why"]
    assert addon["earned_on"] == "2026-03-09" and "40 minutes" in addon["why"]


def test_each_line_has_its_own_threshold_day(scenario):
    # 20 minutes on 03-05 (98980), 20 more on 03-09 (98981), 20 more on 03-20 (98981 x2): 98980 is
    # dated 03-05, 98981 x2 on 03-20, the day its second unit (60 minutes) was earned.
    s = scenario()
    s.days(["2026-03-02"])
    s.time(20, "2026-03-05")
    s.time(20, "2026-03-09")
    s.time(20, "2026-03-20")
    s.compute(AS_OF)
    r = s.management("2026-03")
    assert _dates(r) == [("98980", "2026-03-05"), ("98981", "2026-03-20")]
    assert r.service_date == d("2026-03-05")
    csv_text = billing.to_csv(billing.summaries(s.conn, s.clinic, d("2026-03-01")))
    assert "98981" in csv_text and "2026-03-20" in csv_text


def test_cq_that_comes_and_goes_settles_on_the_last_crossing(scenario):
    # Assistant 5 min on 03-03 (share 100%), therapist 60 min on 03-10 (share 7.7%: no CQ yet),
    # assistant 10 min on 03-20 (share 20%: CQ for good). 75 minutes -> 98980 + 98981 x2 with CQ; the
    # CQ lines are dated no earlier than 03-20, when the share last crossed 10%.
    s = scenario()
    s.days(["2026-03-02"])
    s.time(5, "2026-03-03", who=s.assistant)
    s.time(60, "2026-03-10")
    s.time(10, "2026-03-20", who=s.assistant)
    s.compute(AS_OF)
    r = s.management("2026-03")
    assert r.lines == [("98980", 1, ("GP", "CQ")), ("98981", 2, ("GP", "CQ"))]
    assert _dates(r) == [("98980", "2026-03-20"), ("98981", "2026-03-20")]


def test_month_end_option_dates_every_line_at_month_end(scenario):
    # management.date_of_service = month_end: all lines 03-31, never before they were earned.
    pol = variant(MEDICARE, "month-end", management={"date_of_service": "month_end"})
    s = scenario(policy="month-end")
    s.days(["2026-03-02"])
    s.time(20, "2026-03-05")
    s.time(20, "2026-03-09")
    s.compute(AS_OF, {"month-end": pol})
    r = s.management("2026-03")
    assert _dates(r) == [("98980", "2026-03-31"), ("98981", "2026-03-31")]
    assert [x["earned_on"] for x in r.explanation["lines"]] == ["2026-03-05", "2026-03-09"]


def test_supply_line_dated_from_its_own_threshold(scenario):
    # supply.date_of_service = threshold_day, 20 days from 03-01: 98977 earned on its 16th day 03-16
    # and dated then; the line says so.
    pol = variant(MEDICARE, "dos-threshold", supply={"date_of_service": "threshold_day"})
    s = scenario(policy="dos-threshold")
    s.days(days_from("2026-03-01", 20))
    s.compute(AS_OF, {"dos-threshold": pol})
    r = s.supply(0)
    assert _dates(r) == [("98977", "2026-03-16")]
    (line,) = r.explanation["lines"]
    assert line["earned_on"] == "2026-03-16" and "data day 16" in line["why"]


def test_setup_cq_dated_when_the_assistant_share_settled(scenario):
    # 98975 earned on 03-02 (2nd day); education by the therapist 10 min on 03-01 and by the PTA 5
    # min on 03-06 (CQ): under setup.date_of_service = threshold_day the line is dated 03-06.
    pol = variant(MEDICARE, "setup-threshold", setup={"date_of_service": "threshold_day"})
    s = scenario(policy="setup-threshold")
    s.days(days_from("2026-03-01", 5))
    s.time(10, "2026-03-01", activity="education", channel="in_person")
    s.time(5, "2026-03-06", activity="education", channel="in_person", who=s.assistant)
    s.compute(AS_OF, {"setup-threshold": pol})
    r = s.setup()
    assert r.lines == [("98975", 1, ("GP", "CQ"))] and _dates(r) == [("98975", "2026-03-06")]


# ------------------------------------------------------------------ the period anchor ------------


def test_anchor_first_data_day_versus_first_counted_day(scenario):
    # Data every day 03-02..04-03, consent on 03-05. The rule's anchor (first_data_day, default):
    # period 0 = 03-02..03-31 with 27 counted days (03-02..03-04 before consent) -> 98977, period 1
    # = 04-01..04-03 with 3 days -> 98985. Anchored on the first counted day: one period
    # 03-05..04-03 with 30 days (the next starts 04-04, empty). Both explanations say where and why the periods start.
    s = scenario(consent="2026-03-05T08")
    s.days(days_from("2026-03-02", 33))
    s.compute(AS_OF)
    p0, p1 = s.supply(0), s.supply(1)
    assert (p0.period_start, p0.period_end, p0.data_days, p0.codes) == (
        d("2026-03-02"), d("2026-03-31"), 27, ["98977"],
    )
    assert (p1.period_start, p1.data_days, p1.codes) == (d("2026-04-01"), 3, ["98985"])
    anchor = p0.explanation["anchor"]
    assert anchor["rule"] == "first_data_day" and anchor["date"] == "2026-03-02"
    assert "first counted day 2026-03-05" in anchor["detail"]
    assert s.setup().explanation["anchor"]["date"] == "2026-03-02"

    counted = variant(MEDICARE, "counted-anchor", supply={"anchor": "first_counted_day"})
    t = scenario(consent="2026-03-05T08", policy="counted-anchor")
    t.days(days_from("2026-03-02", 33))
    t.compute(AS_OF, {"counted-anchor": counted})
    q0 = t.supply(0)
    assert (q0.period_start, q0.period_end, q0.data_days, q0.codes) == (
        d("2026-03-05"), d("2026-04-03"), 30, ["98977"],
    )
    assert (t.supply(1).period_start, t.supply(1).data_days) == (d("2026-04-04"), 0)
    assert q0.explanation["anchor"]["rule"] == "first_counted_day"
    assert MEDICARE.supply.anchor == "first_data_day"


def test_anchor_ignores_data_that_never_qualifies(scenario):
    # A non-qualifying data point on 03-01 is no day with data: the anchor is 03-03, the first
    # qualifying one.
    s = scenario()
    s.days(["2026-03-01"], qualifying=False)
    s.days(days_from("2026-03-03", 3))
    s.compute(AS_OF)
    assert s.supply(0).period_start == d("2026-03-03")


# ------------------------------------------------------------------ monitoring active ------------


def test_no_management_code_in_a_month_without_a_data_day(scenario):
    # Data only in March; 25 video minutes in April. Default monitoring_active = data_day: April gets
    # no code and says why; March (a data day, 25 minutes) gets 98980.
    s = scenario()
    s.days(["2026-03-10"])
    s.time(25, "2026-03-12")
    s.time(25, "2026-04-12")
    s.compute(AS_OF)
    april = s.management("2026-04")
    assert april.codes == [] and april.gate("monitoring_active")["passed"] is False
    assert "no data day in the month (policy: data_day)" in april.reason
    assert s.management("2026-03").codes == ["98980"]
    assert "1 data day in the month, first 2026-03-10" in s.management("2026-03").gate("monitoring_active")["detail"]


def test_monitoring_active_by_assigned_device(scenario):
    # The same month under monitoring_active = device_assigned: the assigned device suffices -> 98980.
    pol = variant(MEDICARE, "assigned", management={"monitoring_active": "device_assigned"})
    s = scenario(policy="assigned")
    s.days(["2026-03-10"])
    s.time(25, "2026-04-12")
    s.compute(AS_OF, {"assigned": pol})
    april = s.management("2026-04")
    assert april.codes == ["98980"] and "(policy: device_assigned)" in april.gate("monitoring_active")["detail"]


def test_monitoring_active_by_overlapping_supply_period(scenario):
    # monitoring_active = supply_period: data 03-20..03-25 anchor period 0 at 03-20..04-18 (6 days,
    # enough for a supply code), which overlaps April -> April's 25 minutes bill 98980. Period 1
    # (04-19..05-18) has no data day: May's minutes bill nothing.
    pol = variant(MEDICARE, "period", management={"monitoring_active": "supply_period"})
    s = scenario(policy="period")
    s.days(days_from("2026-03-20", 6))
    s.time(25, "2026-04-12")
    s.time(25, "2026-05-12")
    s.compute("2026-06-15", {"period": pol})
    april, may = s.management("2026-04"), s.management("2026-05")
    assert april.codes == ["98980"]
    detail = april.gate("monitoring_active")["detail"]
    assert "device period 0 (2026-03-20..2026-04-18, 6 data days) overlaps the month" in detail
    assert may.codes == [] and may.gate("monitoring_active")["passed"] is False


# ------------------------------------------------------------------ late data and amendments -----


def test_late_sync_within_grace_changes_the_answer_quietly(scenario):
    # 15 days in period 0 (03-01..03-30). On 04-03 (inside the 7-day grace) the answer is still
    # provisional: release holds it. A late sync for 03-29 arrives: 16 days -> 98977, no amendment.
    # On 04-07 it is final and released as 98977.
    s = scenario()
    s.days(days_from("2026-03-01", 15))
    s.compute("2026-04-03")
    report = billing.release(s.conn, s.clinic, d("2026-03-01"))
    assert f"supply/{s.episode}/0" in {h.result_key for h in report.held}
    s.days(["2026-03-29"])
    s.compute("2026-04-03")
    assert s.supply(0).codes == ["98977"] and s.supply(0).status == "provisional"
    s.compute("2026-04-07")
    billing.release(s.conn, s.clinic, d("2026-03-01"))
    assert s.supply(0).status == "released"
    amended = "select count(*) from eligibility_amendments where result_key = %s"
    assert s.conn.execute(amended, (f"supply/{s.episode}/0",)).fetchone()[0] == 0


def test_amendment_says_what_changed_in_words(scenario):
    # Released as 98985 (15 days); a late day for 03-20 arrives after the grace: the amendment says
    # which data arrived, what it did to the count, and what that does to the claim.
    s = scenario()
    s.days(days_from("2026-03-01", 15))
    s.compute("2026-04-15")
    billing.release(s.conn, s.clinic, d("2026-03-01"))
    s.days(["2026-03-20"])
    s.compute("2026-04-15")
    (reason,) = s.conn.execute(
        "select reason from eligibility_amendments where result_key = %s", (f"supply/{s.episode}/0",)
    ).fetchone()
    assert reason == (
        "data for 2026-03-20 arrived after the release and now counts: data days 15 -> 16; "
        "so the claim changes from 98985-GP dated 2026-03-30 to 98977-GP dated 2026-03-30"
    )


def test_amendment_names_the_entry_and_why_it_stopped_counting(scenario):
    # March: 25 video minutes -> 98980, released. The entry is voided: the amendment names the entry,
    # its minutes, why it no longer counts, and the claim going from 98980 to no code.
    from eligibility.timeentries import void_entry

    s = scenario()
    s.days(["2026-03-02"])
    entry = s.time(25, "2026-03-05")
    s.compute("2026-04-15")
    billing.release(s.conn, s.clinic, d("2026-03-01"))
    void_entry(s.conn, entry, "logged for the wrong patient")
    s.compute("2026-04-15")
    (reason,) = s.conn.execute(
        "select reason from eligibility_amendments where result_key = %s", (f"management/{s.episode}/2026-03",)
    ).fetchone()
    assert reason == (
        f"entry {entry} (25.00 minutes) no longer counts (voided): minutes 25.00 -> 0.00; "
        "no interactive contact counts in the month any more; "
        "so the claim changes from 98980-GP dated 2026-03-05 to no code"
    )


def test_amendment_tells_late_data_from_a_corrected_consent(scenario):
    # Released with consent on 03-04 (03-01..03-03 excluded, 13 days -> 98985). The consent date is
    # then corrected to 03-01: the three days were there all along, so the amendment says they now
    # count and why they were excluded, not that data arrived late.
    s = scenario(consent="2026-03-04T08")
    s.days(days_from("2026-03-01", 16))
    s.compute("2026-04-15")
    assert s.supply(0).codes == ["98985"]
    billing.release(s.conn, s.clinic, d("2026-03-01"))
    s.update_episode(consent_at=s.local("2026-03-01", 8))
    s.compute("2026-04-15")
    (reason,) = s.conn.execute(
        "select reason from eligibility_amendments where result_key = %s", (f"supply/{s.episode}/0",)
    ).fetchone()
    assert "arrived after the release" not in reason
    assert reason.startswith(
        "2026-03-01 now counts (was excluded: before consent); 2026-03-02 now counts (was excluded: before "
        "consent); 2026-03-03 now counts (was excluded: before consent): data days 13 -> 16"
    )
    assert reason.endswith("so the claim changes from 98985-GP dated 2026-03-30 to 98977-GP dated 2026-03-30")
