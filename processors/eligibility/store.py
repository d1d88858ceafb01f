"""The thin database layer: load a batch of patients' inputs in bulk, run the pure engine, write
the answers back with upserts, and record an amendment whenever a released answer changes.

Tables read: episodes, device_assignments, devices, device_models, data_day_facts,
therapist_time_entries, patient_timezones, rpm_billing_periods.
Tables written: eligibility_results, eligibility_amendments, eligibility_dirty_patients.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
import psycopg

from processors.eligibility.engine import compute_patient
from processors.eligibility.explain import (
    answer_of,
    bill_month,
    change_reason,
    digest,
    dumps,
    explanation_of,
)
from processors.eligibility.model import (
    Assignment,
    DayFact,
    Episode,
    PatientInputs,
    Result,
    RpmPeriod,
    TimeEntry,
)
from processors.eligibility.policy import Policy, available_policies

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
RECOMPUTE_LOCK = 0x52544D_E1  # one recompute loop at a time per database

# ------------------------------------------------------------------------------ marking ---------


def mark_dirty(conn: Conn, patient_ids: Iterable[str], reason: str) -> int:
    """Queue patients for recomputation. Triggers on the input tables already do this; call it for
    changes the database cannot see (e.g. a new policy file)."""
    ids = sorted(set(patient_ids))
    if ids:
        conn.execute("select eligibility_mark_dirty(p, %s) from unnest(%s::text[]) as p", (reason, ids))
    return len(ids)


def mark_all(conn: Conn, reason: str = "recompute all") -> int:
    rows = conn.execute("select distinct patient_id from episodes").fetchall()
    return mark_dirty(conn, (r[0] for r in rows), reason)


def mark_due(conn: Conn, as_of: date) -> int:
    """Patients whose open period or month has ended by `as_of`: their status turns final and the
    next period/month opens, without any new data."""
    rows = conn.execute(
        "select distinct patient_id from eligibility_results where status = 'provisional' and final_on <= %s",
        (as_of,),
    ).fetchall()
    return mark_dirty(conn, (r[0] for r in rows), "period ended")


def claim_dirty(conn: Conn, limit: int) -> list[tuple[str, int]]:
    rows = conn.execute(
        "select patient_id, mark_seq from eligibility_dirty_patients order by mark_seq limit %s", (limit,)
    ).fetchall()
    return [(str(p), int(s)) for p, s in rows]


def clear_dirty(conn: Conn, claimed: Sequence[tuple[str, int]]) -> None:
    """Forget the marks we computed; a mark that arrived meanwhile has a newer seq and stays.

    A mark row locked by another transaction is being marked again right now (a sink transaction
    whose triggers queue the patient): skip it rather than wait. Waiting deadlocked against sink
    transactions that mark several patients (in their own order) while this delete held others;
    skipping is also right, since that row will carry a newer seq and must stay."""
    if claimed:
        conn.execute(
            """delete from eligibility_dirty_patients d where d.patient_id in (
                   select e.patient_id from eligibility_dirty_patients e
                   join unnest(%s::text[], %s::bigint[]) as c(patient_id, mark_seq)
                     on e.patient_id = c.patient_id and e.mark_seq = c.mark_seq
                   order by e.patient_id
                   for update of e skip locked)""",
            ([p for p, _ in claimed], [s for _, s in claimed]),
        )


# ------------------------------------------------------------------------------ loading ---------


def load_inputs(conn: Conn, patient_ids: Sequence[str]) -> dict[str, PatientInputs]:
    """Everything the engine needs for these patients, in one query per table."""
    ids = list(patient_ids)
    episodes: dict[str, list[Episode]] = defaultdict(list)
    for row in conn.execute(
        """select episode_id, patient_id, clinic_id, payer_policy, monitoring_category, discipline,
                  billing_practitioner_id, start_date, setup_date, setup_documented_at, consent_at,
                  plan_of_care_start, plan_of_care_end, discharge_date
             from episodes where patient_id = any(%s)""",
        (ids,),
    ):
        episodes[row[1]].append(Episode(*row))
    assignments: dict[str, list[Assignment]] = defaultdict(list)
    for pid, device, episode, model, qualifying, valid_from, valid_to in conn.execute(
        """select a.patient_id, a.device_id, a.episode_id, d.model_id, m.qualifying_medical_device,
                  a.valid_from, a.valid_to
             from device_assignments a join devices d using (device_id) join device_models m using (model_id)
            where a.patient_id = any(%s)""",
        (ids,),
    ):
        assignments[pid].append(Assignment(device, episode, model, qualifying, valid_from, valid_to))
    facts: dict[str, list[DayFact]] = defaultdict(list)
    cur = conn.cursor()
    cur.execute(
        """select patient_id, local_date, device_id, qualifying, record_refs::text
             from data_day_facts where patient_id = any(%s)""",
        (ids,),
    )
    for pid, local_date, device, qualifying, refs in cur:
        facts[pid].append(DayFact(local_date, device, qualifying, refs))
    entries: dict[str, list[TimeEntry]] = defaultdict(list)
    for row in conn.execute(
        """select patient_id, entry_id, episode_id, practitioner_id, practitioner_role, discipline, activity,
                  channel, started_at, minutes, service_date, supersedes, recorded_at,
                  voided_at is not null, other_service
             from therapist_time_entries where patient_id = any(%s)""",
        (ids,),
    ):
        entries[row[0]].append(TimeEntry(*row[1:]))
    zones: dict[str, list[tuple[Any, str]]] = defaultdict(list)
    for pid, at, tz in conn.execute(
        "select patient_id, effective_from, tz from patient_timezones where patient_id = any(%s)", (ids,)
    ):
        zones[pid].append((at, tz))
    rpm: dict[str, list[RpmPeriod]] = defaultdict(list)
    for pid, start, end, who in conn.execute(
        """select patient_id, period_start, period_end, practitioner_id
             from rpm_billing_periods where patient_id = any(%s)""",
        (ids,),
    ):
        rpm[pid].append(RpmPeriod(start, end, who))
    return {
        pid: PatientInputs(
            pid,
            tuple(episodes[pid]),
            tuple(assignments[pid]),
            tuple(facts[pid]),
            tuple(entries[pid]),
            tuple(zones[pid]),
            tuple(rpm[pid]),
        )
        for pid in ids
    }


# ------------------------------------------------------------------------------ saving ----------


@dataclass(slots=True)
class SaveStats:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    status_only: int = 0
    deleted: int = 0
    amendments: int = 0

    def add(self, other: SaveStats) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True, slots=True)
class _Row:
    result: Result
    answer: bytes
    explanation: bytes
    answer_hash: str
    explanation_hash: str


_COLUMNS = (
    "result_key", "kind", "patient_id", "episode_id", "clinic_id", "billing_practitioner_id", "policy_id",
    "policy_version", "period_index", "period_start", "period_end", "bill_month", "codes", "answer",
    "service_date", "reached_on", "status", "final_on", "early_release", "reason", "data_days", "minutes",
    "explanation", "answer_hash", "explanation_hash", "revision",
)  # fmt: skip


def _row_values(row: _Row, status: str, revision: int) -> tuple[Any, ...]:
    r = row.result
    return (
        r.key, r.kind, r.patient_id, r.episode_id, r.clinic_id, r.billing_practitioner_id, r.policy_id,
        r.policy_version, r.period_index, r.period_start, r.period_end, bill_month(r), list(r.codes),
        row.answer.decode(), r.service_date, r.reached_on, status, r.final_on, r.early_release, r.reason,
        r.data_days, r.minutes, row.explanation.decode(), row.answer_hash, row.explanation_hash, revision,
    )  # fmt: skip


def _prepare(results: Iterable[Result]) -> list[_Row]:
    out = []
    for r in results:
        a, e = dumps(answer_of(r)), dumps(explanation_of(r))
        out.append(_Row(r, a, e, digest(a), digest(e)))
    return out


def save_results(conn: Conn, patient_ids: Sequence[str], results: Sequence[Result]) -> SaveStats:
    """Upsert the patients' answers. Unchanged answers are left alone; a released answer that changed
    gets an amendment (old, new, why) and the status 'amended' until it is released again."""
    stats = SaveStats()
    existing: dict[str, tuple[str, str, str, str | None, int]] = {}
    for key, ah, eh, status, release_id, revision in conn.execute(
        """select result_key, answer_hash, explanation_hash, status, release_id, revision
             from eligibility_results where patient_id = any(%s)""",
        (list(patient_ids),),
    ):
        existing[key] = (ah, eh, status, release_id, revision)
    rows = _prepare(results)
    fresh: list[tuple[Any, ...]] = []
    status_updates: list[tuple[str, str]] = []
    released_changes: list[_Row] = []
    for row in rows:
        old = existing.get(row.result.key)
        if old is None:
            fresh.append(_row_values(row, row.result.status, 1))
            stats.inserted += 1
            continue
        ah, eh, status, release_id, revision = old
        if (ah, eh) == (row.answer_hash, row.explanation_hash):
            if status in ("provisional", "final") and status != row.result.status:
                status_updates.append((row.result.key, row.result.status))
                stats.status_only += 1
            else:
                stats.unchanged += 1
            continue
        if release_id is not None:
            released_changes.append(row)
            continue
        fresh.append(_row_values(row, row.result.status, revision + 1))
        stats.updated += 1
    produced = {row.result.key for row in rows}
    stale = [k for k, v in existing.items() if k not in produced]
    stale_released = [k for k in stale if existing[k][3] is not None]
    stale_unreleased = [k for k in stale if existing[k][3] is None]
    with conn.transaction():
        if fresh:
            _upsert(conn, fresh)
        if status_updates:
            conn.execute(
                """update eligibility_results r set status = u.status
                     from unnest(%s::text[], %s::text[]) as u(result_key, status)
                    where r.result_key = u.result_key""",
                ([k for k, _ in status_updates], [s for _, s in status_updates]),
            )
        if stale_unreleased:
            conn.execute("delete from eligibility_results where result_key = any(%s)", (stale_unreleased,))
            stats.deleted += len(stale_unreleased)
        if released_changes:
            stats.amendments += _amend(conn, released_changes, existing)
            stats.updated += len(released_changes)
        if stale_released:
            stats.amendments += _withdraw(conn, stale_released)
    return stats


_TYPES = (
    "text", "text", "text", "text", "text", "text", "text", "text", "int", "date", "date", "date", "text",
    "text", "date", "date", "text", "date", "bool", "text", "int", "numeric", "text", "text", "text", "int",
)  # fmt: skip
_CASTS = {
    "codes": "string_to_array(codes, ',')",
    "answer": "answer::jsonb",
    "explanation": "explanation::json",
}


def _upsert(conn: Conn, values: list[tuple[Any, ...]]) -> None:
    """Insert or update rows in one statement: one array per column, unnested server-side (the
    writer role may not create temporary tables)."""
    columns = list(zip(*values, strict=True))
    columns[_COLUMNS.index("codes")] = tuple(",".join(c) for c in columns[_COLUMNS.index("codes")])
    cols = ", ".join(_COLUMNS)
    arrays = ", ".join(f"%b::{t}[]" for t in _TYPES)  # binary: no per-element text escaping
    select = ", ".join(_CASTS.get(c, c) for c in _COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "result_key")
    conn.execute(
        f"""insert into eligibility_results ({cols}, computed_at)
            select {select}, now() from unnest({arrays}) as s({cols})
            on conflict (result_key) do update set {updates}, computed_at = now()""",
        [list(c) for c in columns],
    )


def _released_answers(conn: Conn, keys: Sequence[str]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """The answer and explanation on record for each result: the current row (released or amended)."""
    out = {}
    for key, answer, explanation in conn.execute(
        "select result_key, answer, explanation from eligibility_results where result_key = any(%s)",
        (list(keys),),
    ):
        out[key] = (answer, explanation)
    return out


def _last_released(conn: Conn, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for key, answer in conn.execute(
        """select distinct on (result_key) result_key, answer from eligibility_releases
            where result_key = any(%s) order by result_key, released_at desc, release_id desc""",
        (list(keys),),
    ):
        out[key] = answer
    return out


def _amend(
    conn: Conn, rows: Sequence[_Row], existing: Mapping[str, tuple[str, str, str, str | None, int]]
) -> int:
    keys = [r.result.key for r in rows]
    on_record = _released_answers(conn, keys)
    released = _last_released(conn, keys)
    values = []
    for row in rows:
        key = row.result.key
        old_answer, old_expl = on_record[key]
        new_answer, new_expl = orjson.loads(row.answer), orjson.loads(row.explanation)
        _, _, _, release_id, revision = existing[key]
        assert release_id is not None
        reason = change_reason(old_answer, new_answer, old_expl, new_expl)
        conn.execute(
            """insert into eligibility_amendments (result_key, patient_id, clinic_id, release_id, old_answer,
                   new_answer, changes_claim, reason, old_explanation, new_explanation)
               values (%s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s::jsonb, %s::jsonb)""",
            (
                key, row.result.patient_id, row.result.clinic_id, release_id, dumps(old_answer).decode(),
                row.answer.decode(), old_answer != new_answer, reason, dumps(old_expl).decode(),
                row.explanation.decode(),
            ),
        )  # fmt: skip
        # Back to 'released' only when billing already holds exactly this answer.
        status = "released" if released.get(key) == new_answer else "amended"
        values.append(_row_values(row, status, revision + 1))
    _upsert(conn, values)
    return len(rows)


def _withdraw(conn: Conn, keys: Sequence[str]) -> int:
    """A released result whose period no longer exists (e.g. the anchor moved): keep the row, empty
    its answer, and amend."""
    on_record = _released_answers(conn, keys)
    for key in keys:
        old_answer, old_expl = on_record[key]
        new_answer: dict[str, Any] = {"codes": [], "service_date": None}
        new_expl = {**old_expl, "reason": "withdrawn: this period or month no longer exists for the episode"}
        row = conn.execute(
            "select patient_id, clinic_id, release_id from eligibility_results where result_key = %s", (key,)
        ).fetchone()
        assert row is not None
        conn.execute(
            """insert into eligibility_amendments (result_key, patient_id, clinic_id, release_id, old_answer,
                   new_answer, changes_claim, reason, old_explanation, new_explanation)
               values (%s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s::jsonb, %s::jsonb)""",
            (
                key, row[0], row[1], row[2], dumps(old_answer).decode(), dumps(new_answer).decode(),
                old_answer != new_answer, new_expl["reason"], dumps(old_expl).decode(),
                dumps(new_expl).decode(),
            ),
        )  # fmt: skip
        conn.execute(
            """update eligibility_results set answer = %s::jsonb, explanation = %s::json, codes = '{}',
                      status = 'amended', reason = %s, answer_hash = '', explanation_hash = '',
                      revision = revision + 1, computed_at = now()
                where result_key = %s""",
            (dumps(new_answer).decode(), dumps(new_expl).decode(), new_expl["reason"], key),
        )
    return len(keys)


# ------------------------------------------------------------------------------ recompute -------


@dataclass(slots=True)
class RecomputeStats:
    patients: int = 0
    results: int = 0
    seconds: float = 0.0
    load_s: float = 0.0
    compute_s: float = 0.0
    save_s: float = 0.0
    saved: SaveStats = field(default_factory=SaveStats)


def recompute_patients(
    conn: Conn, patient_ids: Sequence[str], as_of: date, policies: Mapping[str, Policy] | None = None
) -> RecomputeStats:
    """Recompute these patients now (whether marked or not)."""
    pol = policies if policies is not None else available_policies()
    stats = RecomputeStats()
    t0 = time.perf_counter()
    inputs = load_inputs(conn, patient_ids)
    t1 = time.perf_counter()
    # Many small immutable objects and no cycles: the cyclic collector would only rescan them.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        results = [r for pid in patient_ids for r in compute_patient(inputs[pid], pol, as_of)]
    finally:
        if gc_was_enabled:
            gc.enable()
    t2 = time.perf_counter()
    stats.saved = save_results(conn, patient_ids, results)
    t3 = time.perf_counter()
    stats.patients, stats.results = len(patient_ids), len(results)
    stats.load_s, stats.compute_s, stats.save_s, stats.seconds = t1 - t0, t2 - t1, t3 - t2, t3 - t0
    return stats


def recompute_dirty(
    conn: Conn,
    as_of: date,
    policies: Mapping[str, Policy] | None = None,
    batch: int = 2000,
    max_batches: int | None = None,
) -> RecomputeStats:
    """The incremental loop: mark patients whose periods ended, then recompute every marked patient
    in batches until none is left. Only one loop runs at a time per database."""
    total = RecomputeStats()
    pol = policies if policies is not None else available_policies()
    locked = conn.execute("select pg_try_advisory_lock(%s)", (RECOMPUTE_LOCK,)).fetchone()
    if not locked or not locked[0]:
        log.warning("another eligibility recompute is running; skipping")
        return total
    try:
        mark_due(conn, as_of)
        done = 0
        while max_batches is None or done < max_batches:
            claimed = claim_dirty(conn, batch)
            if not claimed:
                break
            s = recompute_patients(conn, [p for p, _ in claimed], as_of, pol)
            clear_dirty(conn, claimed)
            total.patients += s.patients
            total.results += s.results
            total.load_s += s.load_s
            total.compute_s += s.compute_s
            total.save_s += s.save_s
            total.seconds += s.seconds
            total.saved.add(s.saved)
            done += 1
            log.info("eligibility batch: %d patients, %d results in %.2fs", s.patients, s.results, s.seconds)
    finally:
        conn.execute("select pg_advisory_unlock(%s)", (RECOMPUTE_LOCK,))
    return total


def _worker_batch(dsn: str, claimed: list[tuple[str, int]], as_of: date) -> RecomputeStats:
    with psycopg.connect(dsn, autocommit=True) as conn:
        stats = recompute_patients(conn, [p for p, _ in claimed], as_of)
        clear_dirty(conn, claimed)
        return stats


def recompute_dirty_parallel(
    conn: Conn, dsn: str, as_of: date, workers: int = 2, batch: int = 1000
) -> RecomputeStats:
    """Like recompute_dirty, with batches spread over worker processes (one connection each): a
    patient's answers depend on that patient only, so batches are independent."""
    from concurrent.futures import ProcessPoolExecutor

    total = RecomputeStats()
    locked = conn.execute("select pg_try_advisory_lock(%s)", (RECOMPUTE_LOCK,)).fetchone()
    if not locked or not locked[0]:
        log.warning("another eligibility recompute is running; skipping")
        return total
    try:
        mark_due(conn, as_of)
        claimed = claim_dirty(conn, 10**9)
        chunks = [claimed[i : i + batch] for i in range(0, len(claimed), batch)]
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for s in pool.map(_worker_batch, [dsn] * len(chunks), chunks, [as_of] * len(chunks)):
                total.patients += s.patients
                total.results += s.results
                total.load_s += s.load_s
                total.compute_s += s.compute_s
                total.save_s += s.save_s
                total.saved.add(s.saved)
        total.seconds = time.perf_counter() - t0
    finally:
        conn.execute("select pg_advisory_unlock(%s)", (RECOMPUTE_LOCK,))
    return total
