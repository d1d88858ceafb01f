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
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
import psycopg

from eligibility.engine import compute_patient
from eligibility.explain import (
    answer_of,
    bill_month,
    change_reason,
    digest,
    dumps,
    explanation_of,
    iso,
)
from eligibility.model import (
    Assignment,
    DayFact,
    Episode,
    PatientInputs,
    Result,
    RpmPeriod,
    TimeEntry,
    fast_init,
)
from eligibility.policy import Policy, available_policies
from rtm.db import Conn

log = logging.getLogger(__name__)

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


# One query per input table for a batch of patients (also read by the benchmark's floor).
INPUT_QUERIES = {
    "episodes": """select episode_id, patient_id, clinic_id, payer_policy, monitoring_category, discipline,
                  billing_practitioner_id, start_date, setup_date, setup_documented_at, consent_at,
                  plan_of_care_start, plan_of_care_end, discharge_date
             from episodes where patient_id = any(%s)""",
    "assignments": """select a.patient_id, a.device_id, a.episode_id, d.model_id, m.qualifying_medical_device,
                  a.valid_from, a.valid_to
             from device_assignments a join devices d using (device_id) join device_models m using (model_id)
            where a.patient_id = any(%s)""",
    "facts": """select patient_id, local_date, device_id, qualifying, record_refs::text
             from data_day_facts where patient_id = any(%s)""",
    "entries": """select patient_id, entry_id, episode_id, practitioner_id, practitioner_role, discipline, activity,
                  channel, started_at, minutes, service_date, supersedes, recorded_at,
                  voided_at is not null, other_service
             from therapist_time_entries where patient_id = any(%s)""",
    "zones": "select patient_id, effective_from, tz from patient_timezones where patient_id = any(%s)",
    "rpm": """select patient_id, period_start, period_end, practitioner_id
             from rpm_billing_periods where patient_id = any(%s)""",
}


InputRows = dict[str, list[tuple[Any, ...]]]


def query_inputs(conn: Conn, patient_ids: Sequence[str]) -> dict[str, Any]:
    """Run the input queries for these patients (`INPUT_QUERIES` by name); each cursor holds its
    result, unconverted, until `fetchall` (which needs no round trip: another thread may convert the
    rows while this connection runs the next statement)."""
    ids = list(patient_ids)
    return {name: conn.cursor().execute(q, (ids,)) for name, q in INPUT_QUERIES.items()}


def fetch_inputs(conn: Conn, patient_ids: Sequence[str]) -> InputRows:
    """The rows of every input table for these patients (`INPUT_QUERIES` by name), as fetched."""
    return {name: cur.fetchall() for name, cur in query_inputs(conn, patient_ids).items()}


def load_inputs(conn: Conn, patient_ids: Sequence[str]) -> dict[str, PatientInputs]:
    """Everything the engine needs for these patients, in one query per table."""
    return build_inputs(patient_ids, fetch_inputs(conn, patient_ids))


def build_inputs(patient_ids: Sequence[str], fetched: InputRows) -> dict[str, PatientInputs]:
    """The engine's inputs from the fetched rows (pure Python: the recompute loop runs it on its
    compute thread, so that the I/O thread seldom needs the interpreter)."""
    ids = list(patient_ids)
    episodes: dict[str, list[Episode]] = defaultdict(list)
    for row in fetched["episodes"]:
        episodes[row[1]].append(Episode(*row))
    assignments: dict[str, list[Assignment]] = defaultdict(list)
    for pid, *assignment in fetched["assignments"]:
        assignments[pid].append(Assignment(*assignment))
    facts: dict[str, list[DayFact]] = defaultdict(list)
    for pid, local_date, device, qualifying, refs in fetched["facts"]:
        facts[pid].append(DayFact(local_date, device, qualifying, refs))
    entries: dict[str, list[TimeEntry]] = defaultdict(list)
    for row in fetched["entries"]:
        entries[row[0]].append(TimeEntry(*row[1:]))
    zones: dict[str, list[tuple[Any, str]]] = defaultdict(list)
    for pid, at, tz in fetched["zones"]:
        zones[pid].append((at, tz))
    rpm: dict[str, list[RpmPeriod]] = defaultdict(list)
    for pid, start, end, who in fetched["rpm"]:
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


@fast_init
@dataclass(frozen=True, slots=True)
class _Row:
    result: Result
    answer: bytes
    explanation: bytes
    answer_hash: str
    explanation_hash: str
    # The row as a new row's COPY line (its own status, revision 1), written with the JSON while
    # the recompute loop's compute thread holds it: the I/O thread then only sends it.
    line: bytes = b""


RESULT_COLUMNS = (
    "result_key", "kind", "patient_id", "episode_id", "clinic_id", "billing_practitioner_id", "policy_id",
    "policy_version", "period_index", "period_start", "period_end", "bill_month", "codes", "answer",
    "service_date", "reached_on", "status", "final_on", "early_release", "reason", "data_days", "minutes",
    "explanation", "answer_hash", "explanation_hash", "revision", "gates_failed",
)  # fmt: skip


def _failed(r: Result) -> list[str]:
    """The names of the gates that failed: stored beside the explanation so that billing lists need
    not parse every explanation document (gate names are identifiers: no separators to escape)."""
    return [g.name for g in r.gates if not g.passed]


def _row_values(row: _Row, status: str, revision: int) -> tuple[Any, ...]:
    r = row.result
    return (
        r.key, r.kind, r.patient_id, r.episode_id, r.clinic_id, r.billing_practitioner_id, r.policy_id,
        r.policy_version, r.period_index, r.period_start, r.period_end, bill_month(r), list(r.codes),
        row.answer.decode(), r.service_date, r.reached_on, status, r.final_on, r.early_release, r.reason,
        r.data_days, r.minutes, row.explanation.decode(), row.answer_hash, row.explanation_hash, revision,
        ",".join(_failed(r)),
    )  # fmt: skip


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text(value: str | None) -> str:
    """A free-text field of COPY's text format: NULL as \\N, backslash and separators escaped."""
    if value is None:
        return "\\N"
    return value.translate(_ESCAPES) if ("\\" in value or "\t" in value or "\n" in value or "\r" in value) else value


def _copy_line(row: _Row, status: str, revision: int) -> bytes:
    """The row's COPY line with this status and revision (the one written in advance if it fits)."""
    if row.line and status == row.result.status and revision == 1:
        return row.line
    r = row
    return _line_of(r.result, r.answer, r.explanation, r.answer_hash, r.explanation_hash, status, revision)


_MONTH_ISO: dict[date, str] = {}  # a day -> its month's first day, as ISO text


def _month_iso(d: date) -> str:
    text = _MONTH_ISO.get(d)
    if text is None:
        if len(_MONTH_ISO) > 100_000:
            _MONTH_ISO.clear()
        text = _MONTH_ISO[d] = iso(d.replace(day=1))
    return text


def _line_of(r: Result, answer: bytes, explanation: bytes, answer_hash: str, explanation_hash: str, status: str,
             revision: int) -> bytes:
    """A result row as one line of COPY text, in `RESULT_COLUMNS` order. Ids and the reason are
    escaped; policy ids, codes, statuses and hashes are validated patterns without separators; the
    JSON documents come from orjson, which escapes every control character, so only their
    backslashes need doubling. (Written out rather than through helpers: it runs once per row.)"""
    t, n = _text, "\\N"
    index, days, minutes, service, reached = r.period_index, r.data_days, r.minutes, r.service_date, r.reached_on
    codes = ",".join([ln.code for ln in r.lines])
    failed = ",".join([g.name for g in r.gates if not g.passed])
    head = (
        f"{t(r.key)}\t{r.kind}\t{t(r.patient_id)}\t{t(r.episode_id)}\t{t(r.clinic_id)}\t"
        f"{t(r.billing_practitioner_id)}\t{t(r.policy_id)}\t{t(r.policy_version)}\t"
        f"{n if index is None else str(index)}\t{iso(r.period_start)}\t{iso(r.period_end)}\t"
        f"{_month_iso(service or r.period_end)}\t{{{codes}}}"  # bill_month
    )
    middle = (
        f"{n if service is None else iso(service)}\t{n if reached is None else iso(reached)}\t{status}\t"
        f"{iso(r.final_on)}\t{'t' if r.early_release else 'f'}\t{t(r.reason)}\t"
        f"{n if days is None else str(days)}\t{n if minutes is None else str(minutes)}"
    )
    tail = f"{answer_hash}\t{explanation_hash}\t{revision}\t{{{failed}}}\n"
    return b"\t".join(
        (head.encode(), answer.replace(b"\\", b"\\\\"), middle.encode(),
         explanation.replace(b"\\", b"\\\\"), tail.encode())
    )  # fmt: skip


def _prepare(results: Iterable[Result], lines: bool = False) -> list[_Row]:
    """Answers and explanations as canonical JSON, hashed; with `lines`, also each row's COPY line
    as a new row (the recompute loop: most of its rows are new or rewritten)."""
    out = []
    memo: dict[int, Any] = {}  # the batch's results keep their days alive while this runs
    for r in results:
        a, e = dumps(answer_of(r)), dumps(explanation_of(r, memo))
        ah, eh = digest(a), digest(e)
        out.append(_Row(r, a, e, ah, eh, _line_of(r, a, e, ah, eh, r.status, 1) if lines else b""))
    return out


@dataclass(slots=True)
class WritePlan:
    """What one batch changes in eligibility_results, decided in Python from the stored hashes so the
    database only sees set-based statements: one COPY of new and rewritten rows, one delete, one
    status update, and the released rows that need amendments."""

    copy_rows: list[bytes] = field(default_factory=list)  # lines of COPY text
    rewrite_keys: list[str] = field(default_factory=list)  # unreleased rows replaced by a new revision
    status_updates: list[tuple[str, str]] = field(default_factory=list)
    released_changes: list[_Row] = field(default_factory=list)
    stale_unreleased: list[str] = field(default_factory=list)
    stale_released: list[str] = field(default_factory=list)


Existing = dict[str, tuple[str, str, str, str | None, int]]


def plan_writes(existing: Existing, rows: Sequence[_Row], stats: SaveStats) -> WritePlan:
    """Only changed rows are written: unchanged answers are skipped, a status that moved on alone is
    one column, a released answer that changed goes to the amendment path."""
    plan = WritePlan()
    for row in rows:
        old = existing.get(row.result.key)
        if old is None:
            plan.copy_rows.append(_copy_line(row, row.result.status, 1))
            stats.inserted += 1
            continue
        ah, eh, status, release_id, revision = old
        if (ah, eh) == (row.answer_hash, row.explanation_hash):
            if status in ("provisional", "final") and status != row.result.status:
                plan.status_updates.append((row.result.key, row.result.status))
                stats.status_only += 1
            else:
                stats.unchanged += 1
            continue
        if release_id is not None:
            plan.released_changes.append(row)
            continue
        plan.rewrite_keys.append(row.result.key)
        plan.copy_rows.append(_copy_line(row, row.result.status, revision + 1))
        stats.updated += 1
    produced = {row.result.key for row in rows}
    for key, old in existing.items():
        if key not in produced:
            (plan.stale_released if old[3] is not None else plan.stale_unreleased).append(key)
    return plan


def save_results(conn: Conn, patient_ids: Sequence[str], results: Sequence[Result]) -> SaveStats:
    """Write the patients' answers. Unchanged answers are left alone; a released answer that changed
    gets an amendment (old, new, why) and the status 'amended' until it is released again."""
    return save_rows(conn, patient_ids, _prepare(results))


def save_rows(conn: Conn, patient_ids: Sequence[str], rows: Sequence[_Row]) -> SaveStats:
    """`save_results` for answers already serialised and hashed (`_prepare`): the database half, which
    the recompute loop runs on its I/O thread while the next batch is computed."""
    stats = SaveStats()
    existing: Existing = {}
    for key, ah, eh, status, release_id, revision in conn.execute(
        """select result_key, answer_hash, explanation_hash, status, release_id, revision
             from eligibility_results where patient_id = any(%s)""",
        (list(patient_ids),),
    ):
        existing[key] = (ah, eh, status, release_id, revision)
    plan = plan_writes(existing, rows, stats)
    with conn.transaction():
        # Never-released rows carry no references: replacing them is a delete plus the COPY below.
        gone = plan.rewrite_keys + plan.stale_unreleased
        if gone:
            conn.execute("delete from eligibility_results where result_key = any(%s)", (gone,))
            stats.deleted += len(plan.stale_unreleased)
        if plan.copy_rows:
            copy_results(conn, "eligibility_results", plan.copy_rows)
        if plan.status_updates:
            conn.execute(
                """update eligibility_results r set status = u.status
                     from unnest(%s::text[], %s::text[]) as u(result_key, status)
                    where r.result_key = u.result_key""",
                ([k for k, _ in plan.status_updates], [s for _, s in plan.status_updates]),
            )
        if plan.released_changes:
            stats.amendments += _amend(conn, plan.released_changes, existing)
            stats.updated += len(plan.released_changes)
        if plan.stale_released:
            stats.amendments += _withdraw(conn, plan.stale_released)
    return stats


def copy_results(conn: Conn, table: str, lines: Sequence[bytes]) -> None:
    """COPY text lines (`RESULT_COLUMNS` order) into a results table in one COPY, sent in large
    chunks (computed_at takes its default)."""
    with conn.cursor().copy(f"copy {table} ({', '.join(RESULT_COLUMNS)}) from stdin") as copy:
        for i in range(0, len(lines), 500):
            copy.write(b"".join(lines[i : i + 500]))


_TYPES = (
    "text", "text", "text", "text", "text", "text", "text", "text", "int", "date", "date", "date", "text",
    "text", "date", "date", "text", "date", "bool", "text", "int", "numeric", "text", "text", "text", "int",
    "text",
)  # fmt: skip
_CASTS = {
    "codes": "string_to_array(codes, ',')",
    "answer": "answer::jsonb",
    "explanation": "explanation::json",
    "gates_failed": "string_to_array(gates_failed, ',')",
}


def _upsert(conn: Conn, values: list[tuple[Any, ...]]) -> None:
    """Update released rows in place (releases and amendments refer to them), one statement: one array
    per column, unnested server-side."""
    columns = list(zip(*values, strict=True))
    at = RESULT_COLUMNS.index("codes")
    columns[at] = tuple(",".join(c) for c in columns[at])
    cols = ", ".join(RESULT_COLUMNS)
    arrays = ", ".join(f"%b::{t}[]" for t in _TYPES)  # binary: no per-element text escaping
    select = ", ".join(_CASTS.get(c, c) for c in RESULT_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in RESULT_COLUMNS if c != "result_key")
    conn.execute(
        f"""insert into eligibility_results ({cols}, computed_at)
            select {select}, now() from unnest({arrays}) as s({cols})
            on conflict (result_key) do update set {updates}, computed_at = now()""",
        [list(c) for c in columns],
    )


def _on_record(conn: Conn, keys: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """Answer, explanation, patient, clinic and release of each result as stored now."""
    out = {}
    for key, answer, explanation, patient, clinic, release_id in conn.execute(
        """select result_key, answer, explanation, patient_id, clinic_id, release_id
             from eligibility_results where result_key = any(%s)""",
        (list(keys),),
    ):
        out[key] = (answer, explanation, patient, clinic, release_id)
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


_AMENDMENT_COLUMNS = (
    "result_key", "patient_id", "clinic_id", "release_id", "old_answer", "new_answer", "changes_claim",
    "reason", "old_explanation", "new_explanation",
)  # fmt: skip


def _insert_amendments(conn: Conn, rows: Sequence[tuple[Any, ...]]) -> None:
    """All of a batch's amendments in one statement (rows in `_AMENDMENT_COLUMNS` order)."""
    cols = list(zip(*rows, strict=True))
    types = ("text", "text", "text", "text", "text", "text", "bool", "text", "text", "text")
    casts = {"old_answer", "new_answer", "old_explanation", "new_explanation"}
    names = ", ".join(_AMENDMENT_COLUMNS)
    select = ", ".join(f"{c}::jsonb" if c in casts else c for c in _AMENDMENT_COLUMNS)
    conn.execute(
        f"""insert into eligibility_amendments ({names})
            select {select} from unnest({", ".join(f"%s::{t}[]" for t in types)}) as a({names})""",
        [list(c) for c in cols],
    )


def _amend(conn: Conn, rows: Sequence[_Row], existing: Existing) -> int:
    keys = [r.result.key for r in rows]
    on_record = _on_record(conn, keys)
    released = _last_released(conn, keys)
    amendments, values = [], []
    for row in rows:
        key = row.result.key
        old_answer, old_expl, _, _, _ = on_record[key]
        new_answer, new_expl = orjson.loads(row.answer), orjson.loads(row.explanation)
        _, _, _, release_id, revision = existing[key]
        assert release_id is not None
        reason = change_reason(old_answer, new_answer, old_expl, new_expl)
        amendments.append((
            key, row.result.patient_id, row.result.clinic_id, release_id, dumps(old_answer).decode(),
            row.answer.decode(), old_answer != new_answer, reason, dumps(old_expl).decode(),
            row.explanation.decode(),
        ))  # fmt: skip
        # Back to 'released' only when billing already holds exactly this answer.
        status = "released" if released.get(key) == new_answer else "amended"
        values.append(_row_values(row, status, revision + 1))
    _insert_amendments(conn, amendments)
    _upsert(conn, values)
    return len(rows)


_WITHDRAWN = "withdrawn: this period or month no longer exists for the episode"


def _withdraw(conn: Conn, keys: Sequence[str]) -> int:
    """A released result whose period no longer exists (e.g. the anchor moved): keep the row, empty
    its answer, and amend."""
    on_record = _on_record(conn, keys)
    new_answer: dict[str, Any] = {"codes": [], "service_date": None}
    amendments, expls = [], []
    for key in keys:
        old_answer, old_expl, patient, clinic, release_id = on_record[key]
        new_expl = dumps({**old_expl, "reason": _WITHDRAWN}).decode()
        expls.append(new_expl)
        amendments.append((
            key, patient, clinic, release_id, dumps(old_answer).decode(), dumps(new_answer).decode(),
            old_answer != new_answer, _WITHDRAWN, dumps(old_expl).decode(), new_expl,
        ))  # fmt: skip
    _insert_amendments(conn, amendments)
    conn.execute(
        """update eligibility_results r set answer = %s::jsonb, explanation = u.explanation::json,
                  codes = '{}', status = 'amended', reason = %s, answer_hash = '', explanation_hash = '',
                  revision = r.revision + 1, computed_at = now()
             from unnest(%s::text[], %s::text[]) as u(result_key, explanation)
            where r.result_key = u.result_key""",
        (dumps(new_answer).decode(), _WITHDRAWN, list(keys), expls),
    )
    return len(keys)


# ------------------------------------------------------------------------------ recompute -------


@dataclass(slots=True)
class RecomputeStats:
    patients: int = 0
    results: int = 0
    seconds: float = 0.0
    load_s: float = 0.0
    compute_s: float = 0.0  # the engine alone
    serialise_s: float = 0.0  # answers and explanations to JSON, hashed (in the loop: and COPY lines)
    save_s: float = 0.0
    saved: SaveStats = field(default_factory=SaveStats)

    def add(self, other: RecomputeStats) -> None:
        self.patients += other.patients
        self.results += other.results
        self.load_s += other.load_s
        self.compute_s += other.compute_s
        self.serialise_s += other.serialise_s
        self.save_s += other.save_s
        self.saved.add(other.saved)


def _compute_rows(inputs: Mapping[str, PatientInputs], patient_ids: Sequence[str], as_of: date,
                  pol: Mapping[str, Policy], stats: RecomputeStats, lines: bool = False) -> list[_Row]:
    """The pure half of a batch: answers, serialised and hashed (with `lines`, also as COPY lines);
    adds its results and the seconds of each step to `stats`."""
    # Many small immutable objects and no cycles: the cyclic collector would only rescan them.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        results = [r for pid in patient_ids for r in compute_patient(inputs[pid], pol, as_of)]
        t1 = time.perf_counter()
        rows = _prepare(results, lines)
        stats.compute_s += t1 - t0
        stats.serialise_s += time.perf_counter() - t1
        stats.results += len(results)
        return rows
    finally:
        if gc_was_enabled:
            gc.enable()


def recompute_patients(
    conn: Conn, patient_ids: Sequence[str], as_of: date, policies: Mapping[str, Policy] | None = None
) -> RecomputeStats:
    """Recompute these patients now (whether marked or not)."""
    pol = policies if policies is not None else available_policies()
    stats = RecomputeStats()
    t0 = time.perf_counter()
    inputs = load_inputs(conn, patient_ids)
    t1 = time.perf_counter()
    rows = _compute_rows(inputs, patient_ids, as_of, pol, stats)
    t2 = time.perf_counter()
    stats.saved = save_rows(conn, patient_ids, rows)
    t3 = time.perf_counter()
    stats.patients = len(patient_ids)
    stats.load_s, stats.save_s, stats.seconds = t1 - t0, t3 - t2, t3 - t0
    return stats


Claim = list[tuple[str, int]]
_GC_EVERY = 16  # batches between collections in the recompute loop (see _pipeline)


def _pipeline(
    conn: Conn, claim: Callable[[], Claim], as_of: date, pol: Mapping[str, Policy], max_batches: int | None
) -> RecomputeStats:
    """Recompute batch after batch on one connection, overlapping the database with Python: an I/O
    thread owns the connection and runs, in order, claim + input queries of batch k+1 and the writes
    of batch k, while this thread computes. The writes of a batch commit before the next batch's
    writes start, and marks are cleared only after their batch is written.

    The Python work is all on this thread (turning the fetched rows into inputs, the engine, the JSON,
    the COPY lines), so the I/O thread needs the interpreter only briefly between socket waits: two
    threads taking turns on the interpreter lock kept the database waiting for the I/O thread's turn
    (and the I/O thread's Python work stalled the compute) more than it overlapped anything."""
    total = RecomputeStats()
    t0 = time.perf_counter()

    def load() -> tuple[Claim, dict[str, Any], float]:
        t = time.perf_counter()
        claimed = claim()
        queried = query_inputs(conn, [p for p, _ in claimed]) if claimed else {}
        return claimed, queried, time.perf_counter() - t

    def save(claimed: Claim, rows: list[_Row]) -> tuple[SaveStats, float]:
        t = time.perf_counter()
        saved = save_rows(conn, [p for p, _ in claimed], rows)
        clear_dirty(conn, claimed)
        return saved, time.perf_counter() - t

    def collect(done: Future[tuple[SaveStats, float]]) -> None:
        saved, seconds = done.result()
        total.saved.add(saved)
        total.save_s += seconds

    # The collector is off for the whole loop: both threads allocate many small acyclic objects that
    # each collection would rescan. A batch leaves no cycles (a collection after each batch found
    # none), and a collection walks every live object of the batches in flight (about 1 s of CPU per
    # 10,000 patients when run after each batch), so the young generations are collected only every
    # _GC_EVERY batches: it bounds what a rare cycle could hold.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="eligibility-io") as io:
            loading: Future[tuple[Claim, dict[str, Any], float]] | None = io.submit(load)
            saving: Future[tuple[SaveStats, float]] | None = None
            batches = 0
            while loading is not None:
                claimed, queried, load_s = loading.result()
                if not claimed:
                    break
                batches += 1
                loading = io.submit(load) if max_batches is None or batches < max_batches else None
                ids = [p for p, _ in claimed]
                t = time.perf_counter()
                inputs = build_inputs(ids, {name: cur.fetchall() for name, cur in queried.items()})
                del queried
                total.load_s += load_s + time.perf_counter() - t
                before = total.results
                rows = _compute_rows(inputs, ids, as_of, pol, total, lines=True)
                del inputs
                total.patients += len(ids)
                if saving is not None:
                    collect(saving)  # at most one batch waits to be written: bounded memory
                saving = io.submit(save, claimed, rows)
                if batches % _GC_EVERY == 0:
                    gc.collect(1)
                log.info("eligibility batch: %d patients, %d results", len(ids), total.results - before)
            if saving is not None:
                collect(saving)
    finally:
        if gc_was_enabled:
            gc.enable()
    total.seconds = time.perf_counter() - t0
    return total


def recompute_dirty(
    conn: Conn,
    as_of: date,
    policies: Mapping[str, Policy] | None = None,
    batch: int = 2000,
    max_batches: int | None = None,
    pipelined: bool = False,
) -> RecomputeStats:
    """The incremental loop: mark patients whose periods ended, then recompute every marked patient
    in batches until none is left. Only one loop runs at a time per database. `pipelined`: overlap
    the database with Python (`_pipeline`), for large recomputes; the default keeps one thread."""
    if not pipelined:
        return _recompute_dirty_serial(conn, as_of, policies, batch, max_batches)
    pol = policies if policies is not None else available_policies()
    locked = conn.execute("select pg_try_advisory_lock(%s)", (RECOMPUTE_LOCK,)).fetchone()
    if not locked or not locked[0]:
        log.warning("another eligibility recompute is running; skipping")
        return RecomputeStats()
    try:
        mark_due(conn, as_of)
        # Claims walk the queue by mark_seq: the batch in flight is not claimed again, and a patient
        # marked again meanwhile has a newer seq and comes round once more. (A mark whose transaction
        # commits after a newer seq was claimed waits for the next run: nothing is cleared unseen.)
        after = [0]

        def claim() -> Claim:
            rows = conn.execute(
                """select patient_id, mark_seq from eligibility_dirty_patients where mark_seq > %s
                    order by mark_seq limit %s""",
                (after[0], batch),
            ).fetchall()
            if rows:
                after[0] = int(rows[-1][1])
            return [(str(p), int(s)) for p, s in rows]

        return _pipeline(conn, claim, as_of, pol, max_batches)
    finally:
        conn.execute("select pg_advisory_unlock(%s)", (RECOMPUTE_LOCK,))


def _recompute_dirty_serial(
    conn: Conn, as_of: date, policies: Mapping[str, Policy] | None, batch: int, max_batches: int | None
) -> RecomputeStats:
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
            total.add(s)
            total.seconds += s.seconds
            done += 1
            log.info("eligibility batch: %d patients, %d results in %.2fs", s.patients, s.results, s.seconds)
    finally:
        conn.execute("select pg_advisory_unlock(%s)", (RECOMPUTE_LOCK,))
    return total


def recompute_claimed(dsn: str, batches: list[Claim], as_of: date) -> RecomputeStats:
    """One worker process's share of a parallel recompute: its batches, pipelined on one connection."""
    queue = iter(batches)
    with psycopg.connect(dsn, autocommit=True) as conn:
        return _pipeline(conn, lambda: next(queue, []), as_of, available_policies(), None)


def shares(claimed: Claim, workers: int, batch: int) -> list[list[Claim]]:
    """Batches of `batch` patients dealt round-robin to `workers` (the benchmark's floor uses the same)."""
    chunks = [claimed[i : i + batch] for i in range(0, len(claimed), batch)]
    return [chunks[w::workers] for w in range(workers) if chunks[w::workers]]


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
        parts = shares(claim_dirty(conn, 10**9), workers, batch)
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=max(1, len(parts))) as pool:
            for s in pool.map(recompute_claimed, [dsn] * len(parts), parts, [as_of] * len(parts)):
                total.add(s)
        total.seconds = time.perf_counter() - t0
    finally:
        conn.execute("select pg_advisory_unlock(%s)", (RECOMPUTE_LOCK,))
    return total
