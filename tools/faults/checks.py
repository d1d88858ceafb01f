"""What a fault run checks in the database: every acknowledged event stored exactly once (and, for
IMU batches, stored with the content that was acknowledged), and the derived tables of the
affected patients equal to those of a clean run of the same cohort."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from ingest.acceptance import digest
from rtm.db import Conn
from tools.faults.load import Item

# Derived tables and the columns compared: everything but processing timestamps and counters of
# how often a row was rewritten (a faulted run may recompute more often, never differently).
DERIVED: dict[str, str] = {
    "activity_minutes": "time, patient_id, device_id, steps, active, worn, method",
    "data_day_facts": "local_date, patient_id, device_id, episode_id, tz, wear_minutes, exercise_sets, steps, "
                      "qualifying, record_refs",
    "exercise_sessions": "session_id, patient_id, episode_id, device_id, exercise, body_site, started_at, ended_at, "
                         "prescribed_sets, prescribed_reps",
    "exercise_sets": "time, set_id, patient_id, episode_id, device_id, stream_id, session_id, exercise, end_time, "
                     "rep_count, partial_reps, pauses, reps_per_min, rom_median_deg, rom_max_deg, algorithm_version",
    "rep_results": "time, set_id, rep_index, patient_id, end_time, rom_deg, partial, paused",
    "stream_analyses": "device_id, stream_id, patient_id, session_id, exercise, status, detail, first_time, "
                       "last_time, samples, batches, sets, reps, algorithm_version",
    "eligibility_results": "result_key, kind, patient_id, episode_id, policy_id, policy_version, period_start, "
                           "period_end, bill_month, codes, answer, service_date, reached_on, status, final_on, "
                           "reason, data_days, minutes, explanation_hash",
}

# Not compared, only to say what kind of difference a per-minute one is: the hourly step totals.
HOURLY = ("activity_minutes/hour", "select date_trunc('hour', time) as hour, patient_id, device_id, sum(steps) "
          "from activity_minutes where patient_id = any(%s) group by 1, 2, 3")



@dataclass
class Stored:
    acknowledged: int
    stored: int
    missing: list[uuid.UUID] = field(default_factory=list)
    duplicated: int = 0
    other_content: int = 0  # stored, but not the version the gateway acknowledged last


def stored_events(conn: Conn, acked: dict[uuid.UUID, Item]) -> Stored:
    imu = [i.event_id for i in acked.values() if i.kind == "imu_batch"]
    steps = [i.event_id for i in acked.values() if i.kind == "activity_interval"]
    markers = [i for i in acked.values() if i.kind == "session_marker"]
    rows: dict[uuid.UUID, list[bytes]] = {}
    for event_id, frame in conn.execute("select event_id, frame from imu_batches where event_id = any(%s)", (imu,)):
        rows.setdefault(event_id, []).append(digest(bytes(frame)))
    for event_id, count in conn.execute(
        "select event_id, count(*) from activity_intervals where event_id = any(%s) group by event_id", (steps,)
    ):
        rows[event_id] = [b""] * int(count)
    sessions = {
        sid: (start, end)
        for sid, start, end in conn.execute(
            "select session_id, started_at, ended_at from exercise_sessions where session_id = any(%s)",
            ([m.ref[0] for m in markers if m.ref],),
        )
    }
    out = Stored(acknowledged=len(acked), stored=0)
    for item in acked.values():
        if item.kind == "session_marker" and item.ref is not None:
            sid, phase, at = item.ref
            found = sessions.get(sid, (None, None))[0 if phase == "start" else 1]
            copies = [b""] if found == at else []
        else:
            copies = rows.get(item.event_id, [])
        if not copies:
            out.missing.append(item.event_id)
            continue
        out.duplicated += max(0, len(copies) - 1)
        if item.kind == "imu_batch" and item.digest not in copies:
            out.other_content += 1
            out.missing.append(item.event_id)
            continue
        out.stored += 1
    return out


def derived(conn: Conn, patients: list[str]) -> dict[str, tuple[int, str]]:
    """Per derived table: rows of these patients and a digest of their content."""
    out = {}
    for table, cols in DERIVED.items():
        row = conn.execute(
            f"select count(*), coalesce(md5(string_agg(t::text, '|' order by t::text)), '') "
            f"from (select {cols} from {table} where patient_id = any(%s)) t",
            (patients,),
        ).fetchone()
        assert row is not None
        out[table] = (int(row[0]), str(row[1]))
    row = conn.execute(
        f"select count(*), coalesce(md5(string_agg(t::text, '|' order by t::text)), '') from ({HOURLY[1]}) t",
        (patients,),
    ).fetchone()
    assert row is not None
    out[HOURLY[0]] = (int(row[0]), str(row[1]))
    return out


def rows_of(conn: Conn, table: str, patients: list[str]) -> set[str]:
    return {str(r[0]) for r in conn.execute(
        f"select t::text from (select {DERIVED[table]} from {table} where patient_id = any(%s)) t",
        (patients,),
    )}


def explain_difference(conn: Conn, reference: Conn, table: str, patients: list[str], limit: int = 20) -> list[str]:
    """The rows of a derived table that only one of the two runs has (the first few of each)."""
    mine, theirs = rows_of(conn, table, patients), rows_of(reference, table, patients)
    return ([f"only in this run:  {r}" for r in sorted(mine - theirs)[:limit]]
            + [f"only in clean run: {r}" for r in sorted(theirs - mine)[:limit]])


def differing(a: dict[str, tuple[int, str]], b: dict[str, tuple[int, str]]) -> list[str]:
    """The derived tables that differ, with their row counts (this run vs the clean run)."""
    out = []
    for t in DERIVED:
        if a.get(t) != b.get(t):
            same_hours = t == "activity_minutes" and a.get(HOURLY[0]) == b.get(HOURLY[0])
            out.append(f"{t} ({a[t][0]} vs {b[t][0]} rows{'; hourly totals equal' if same_hours else ''})")
    return out


def pending(conn: Conn, patients: list[str]) -> tuple[int, int]:
    """Recordings waiting for analysis and patients waiting for an eligibility recompute."""
    row = conn.execute(
        """select (select count(*) from imu_stream_queue where patient_id = any(%(p)s)),
                  (select count(*) from eligibility_dirty_patients where patient_id = any(%(p)s))""",
        {"p": patients},
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def outbox_unstored(conn: Conn) -> int:
    """Accepted events the gateway's relay is still getting to the sink: progress to wait for."""
    row = conn.execute("select count(*) from ingest_outbox where stored_at is null").fetchone()
    assert row is not None
    return int(row[0])


@dataclass
class Settled:
    stored: Stored
    notes: list[str]
    all_stored_at: float | None  # time.monotonic() when every acknowledged event was found stored


def settle(connect: Callable[[], Conn], acked: dict[uuid.UUID, Item], patients: list[str],
           revive: Callable[[], list[str]], starting: Callable[[], bool], quiet_s: float,
           timeout_s: float) -> Settled:
    """Wait until every acknowledged event is stored and nothing is pending, or until nothing has
    changed for `quiet_s` (what is missing then stays missing), or `timeout_s`. Processes that died
    are restarted (and named in the notes): a dead worker would otherwise hide later faults. The
    quiet clock runs only once every worker started during the fault is ready (`starting` false):
    a replacement's start-up, group join and table restore on a loaded machine can take longer
    than `quiet_s`, and that is a delay, not a loss."""
    notes: list[str] = []
    started = last_change = time.monotonic()
    last: tuple[int, ...] | None = None
    all_stored_at: float | None = None
    was_starting = False
    while True:
        restarted = revive()
        notes += restarted
        # The quiet clock restarts on the first look that finds every worker ready, not at the last
        # look that found one starting (up to a poll earlier).
        is_starting = starting()
        if is_starting or was_starting:
            last_change = time.monotonic()
        was_starting = is_starting
        try:
            with connect() as conn:
                s = stored_events(conn, acked)
                queue, dirty = pending(conn, patients)
                state = (s.stored, len(s.missing), queue, dirty, outbox_unstored(conn),
                         *(n for n, _ in derived(conn, patients).values()))
        except psycopg.OperationalError:
            state = None  # the database is still coming back
        now = time.monotonic()
        if state is not None and state != last:
            last, last_change = state, now
        if state is not None and not s.missing and all_stored_at is None:
            all_stored_at = now
        if state is not None and not s.missing and queue == 0 and dirty == 0:
            return Settled(s, notes, all_stored_at)
        if now - last_change > quiet_s or now - started > timeout_s:
            if state is None:
                raise RuntimeError("the database did not come back")
            if queue or dirty:
                notes.append(f"not settled: {queue} recordings queued, {dirty} patients awaiting eligibility")
            return Settled(s, notes, all_stored_at)
        time.sleep(0.5)
