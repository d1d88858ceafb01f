"""Casebook: statuses, release, late data and corrections before and after release (amendments),
determinism and incremental recomputation, one test per case."""

from __future__ import annotations

from decimal import Decimal

from eligibility import billing
from eligibility.store import recompute_dirty
from eligibility.timeentries import Correction, correct_entry
from tests.eligibility.factory import MEDICARE, d, days_from, variant


def _amendments(s, kind="supply", suffix="/0"):
    # The set-up result (first period's days) may be amended too; each case looks at one result.
    return s.conn.execute(
        "select old_answer, new_answer, changes_claim, reason, released_in from eligibility_amendments "
        "where result_key = %s order by amendment_id",
        (f"{kind}/{s.episode}{suffix}",),
    ).fetchall()


def test_open_period_is_provisional(scenario):
    # As of 03-20 period 0 (03-01..03-30) is still open: 98977 already reached (16 days by 03-16)
    # but provisional, and the policy does not release 98977 early -> a dry run holds it.
    s = scenario()
    s.days(days_from("2026-03-01", 16))
    s.compute("2026-03-20")
    assert (s.supply(0).codes, s.supply(0).status) == (["98977"], "provisional")
    report = billing.release(s.conn, s.clinic, d("2026-03-01"), dry_run=True)
    assert f"supply/{s.episode}/0" in {h.result_key for h in report.held}


def test_early_release_on_sixteenth_day(scenario):
    # Policy variant release_long_code_at_threshold = true: the provisional 98977 can be released.
    early = variant(MEDICARE, "early", supply={"release_long_code_at_threshold": True})
    s = scenario(policy="early")
    s.days(days_from("2026-03-01", 16))
    s.compute("2026-03-20", {"early": early})
    report = billing.release(s.conn, s.clinic, d("2026-03-01"), dry_run=True)
    assert f"supply/{s.episode}/0" in {r.result_key for r in report.released}


def test_closed_period_is_final_after_grace(scenario):
    # Period 0 ends 03-30; final_after_days = 7 (grace for late syncs): still provisional on 04-06,
    # final on 04-07.
    s = scenario()
    s.days(days_from("2026-03-01", 16))
    s.compute("2026-04-06")
    assert s.supply(0).status == "provisional"
    s.compute("2026-04-07")
    assert s.supply(0).status == "final"


def test_dry_run_changes_nothing(scenario):
    # A dry run lists the final results for the bill month but releases none of them.
    s = scenario()
    s.days(days_from("2026-03-01", 16))
    s.compute("2026-04-15")
    report = billing.release(s.conn, s.clinic, d("2026-03-01"), dry_run=True)
    assert report.release_id is None and report.released
    assert s.supply(0).status == "final"


def test_late_data_before_release(scenario):
    # 15 days -> 98985 (final, not released). A late day arrives for 03-20 -> 16 -> 98977. Nothing was
    # handed to billing, so the answer simply changes: no amendment.
    s = scenario()
    s.days(days_from("2026-03-01", 15))
    s.compute("2026-04-15")
    assert s.supply(0).codes == ["98985"]
    s.days(["2026-03-20"])
    s.compute("2026-04-15")
    assert s.supply(0).codes == ["98977"] and _amendments(s) == []


def test_late_data_after_release_creates_amendment(scenario):
    # 15 days -> 98985, released. A late day for 03-20 -> 98977: an amendment records old (98985),
    # new (98977) and why (data days 15 -> 16, late data for 03-20); the result turns 'amended' until
    # it is released again.
    s = scenario()
    s.days(days_from("2026-03-01", 15))
    s.compute("2026-04-15")
    first = billing.release(s.conn, s.clinic, d("2026-03-01"))
    assert first.release_id
    s.days(["2026-03-20"])
    s.compute("2026-04-15")
    (old, new, changes_claim, reason, released_in) = _amendments(s)[0]
    assert old["codes"][0]["code"] == "98985" and new["codes"][0]["code"] == "98977" and changes_claim
    assert "data days 15 -> 16" in reason and "2026-03-20" in reason and released_in is None
    assert s.supply(0).status == "amended"
    second = billing.release(s.conn, s.clinic, d("2026-03-01"))
    assert s.supply(0).status == "released" and _amendments(s)[0][4] == second.release_id


def test_late_data_after_release_same_claim(scenario):
    # 20 days -> 98977 released; a 21st day changes the explanation, not the claim: an amendment with
    # changes_claim = false, and the result stays released.
    s = scenario()
    s.days(days_from("2026-03-01", 20))
    s.compute("2026-04-15")
    billing.release(s.conn, s.clinic, d("2026-03-01"))
    s.days(["2026-03-25"])
    s.compute("2026-04-15")
    (_, _, changes_claim, reason, _) = _amendments(s)[0]
    assert changes_claim is False and "data days 20 -> 21" in reason
    assert s.supply(0).status == "released"


def test_time_correction_after_release(scenario):
    # March management 25 min -> 98980, released. The entry is corrected to 15 min: amendment
    # 98980 -> 98979, with the entry change named.
    s = scenario()
    s.days(["2026-03-02"])  # monitoring active in March
    entry = s.time(25, "2026-03-05")
    s.compute("2026-04-15")
    billing.release(s.conn, s.clinic, d("2026-03-01"))
    fixed = correct_entry(s.conn, entry, Correction(reason="timer left running", minutes=Decimal(15)))
    s.compute("2026-04-15")
    (old, new, changes_claim, reason, _) = _amendments(s, "management", "/2026-03")[0]
    assert [c["code"] for c in old["codes"]] == ["98980"] and [c["code"] for c in new["codes"]] == ["98979"]
    assert fixed.entry_id in reason and changes_claim


def test_recompute_is_deterministic(scenario):
    # Recomputing from the same stored data gives the same answers: nothing is rewritten.
    s = scenario()
    s.days(days_from("2026-03-01", 16))
    s.time(25, "2026-03-05")
    s.compute("2026-04-15")
    before = {k: (r.answer, r.explanation) for k, r in s.results().items()}
    stats = s.compute("2026-04-15")
    assert stats.saved.unchanged == stats.results and stats.saved.updated == 0
    assert {k: (r.answer, r.explanation) for k, r in s.results().items()} == before


def test_incremental_only_changed_patients(scenario):
    # Stored facts mark their patient dirty (trigger); an identical replay of a fact does not.
    # recompute_dirty handles the marked patient and clears the mark.
    s = scenario()
    s.days(days_from("2026-03-01", 3))
    recompute_dirty(s.conn, d("2026-04-15"))
    marked = "select count(*) from eligibility_dirty_patients where patient_id = %s"
    assert s.conn.execute(marked, (s.patient,)).fetchone()[0] == 0
    s.days(days_from("2026-03-01", 3))  # replay, same content
    assert s.conn.execute(marked, (s.patient,)).fetchone()[0] == 0
    s.days(["2026-03-10"])  # new data
    assert s.conn.execute(marked, (s.patient,)).fetchone()[0] == 1
    stats = recompute_dirty(s.conn, d("2026-04-15"))
    assert stats.patients >= 1 and s.supply(0).data_days == 4


def test_pipelined_loop_over_several_batches(scenario):
    # recompute_dirty loads batch k+1 and writes batch k on its I/O thread while it computes: with one
    # patient per batch, each patient is written, its mark cleared, and a direct recompute afterwards
    # finds nothing to change.
    people = [scenario() for _ in range(3)]
    for i, s in enumerate(people):
        s.days(days_from("2026-03-01", 5 + i))
    stats = recompute_dirty(people[0].conn, d("2026-04-15"), batch=1, pipelined=True)
    assert stats.patients >= 3 and stats.saved.inserted >= 3 * 4
    marked = "select count(*) from eligibility_dirty_patients where patient_id = %s"
    for i, s in enumerate(people):
        assert s.conn.execute(marked, (s.patient,)).fetchone()[0] == 0
        assert s.supply(0).data_days == 5 + i
        again = s.compute("2026-04-15")
        assert again.saved.unchanged == again.results and again.saved.inserted == again.saved.updated == 0


def test_copy_write_keeps_every_character(db):
    # Results are written with COPY text lines built by the engine: a reason, ids and JSON holding a
    # backslash, a tab, a newline and non-ASCII text come back byte for byte (hash of the stored
    # explanation = the hash the engine wrote).
    import hashlib
    import uuid
    from datetime import date as day

    from eligibility.model import Gate, Result
    from eligibility.store import save_results

    tag = uuid.uuid4().hex[:8]
    odd = f"p\\{tag}\tx\ny é"
    r = Result(
        key=f"supply/{odd}/0", kind="supply", patient_id=odd, episode_id=odd, clinic_id="c\\1",
        policy_id="medicare-2026", policy_version="2026.2", period_index=0, period_start=day(2026, 3, 1),
        period_end=day(2026, 3, 30), lines=(), service_date=None, reached_on=None, status="final",
        final_on=day(2026, 4, 7), early_release=False, reason='a\\b\tc\nd "q" é',
        gates=(Gate("consent", True, 'back\\slash\ttab\nline "q"'),), data_days=0,
    )  # fmt: skip
    stats = save_results(db, [odd], [r])
    assert stats.inserted == 1
    key, reason, expl_text, expl_hash = db.execute(
        "select result_key, reason, explanation::text, explanation_hash from eligibility_results "
        "where patient_id = %s",
        (odd,),
    ).fetchone()
    assert (key, reason) == (r.key, r.reason)
    assert hashlib.sha256(expl_text.encode()).hexdigest()[:32] == expl_hash
    assert save_results(db, [odd], [r]).unchanged == 1


def test_released_period_that_disappears_is_withdrawn(scenario):
    # 45 days from 03-01: period 1 (03-31..04-29, 15 days) -> 98985, released with April. The
    # discharge is then recorded as 03-25: period 1 no longer exists. Its row is kept, emptied and
    # marked amended, with an amendment saying it was withdrawn (nothing is deleted).
    s = scenario()
    s.days(days_from("2026-03-01", 45))
    s.compute("2026-05-15")
    assert s.supply(1).codes == ["98985"]
    billing.release(s.conn, s.clinic, d("2026-04-01"))
    assert s.supply(1).status == "released"
    s.update_episode(discharge_date=d("2026-03-25"))
    s.compute("2026-05-15")
    r = s.supply(1)
    assert (r.codes, r.status, r.answer["codes"]) == ([], "amended", [])
    (old, new, changes_claim, reason, _) = _amendments(s, "supply", "/1")[0]
    assert old["codes"][0]["code"] == "98985" and new["codes"] == [] and changes_claim
    assert reason.startswith("withdrawn")
