"""Raw events into their tables, each as one set-based statement per batch.

Each function runs inside the caller's transaction and returns what actually changed, so that
a replayed (identical) event triggers no downstream work at all.

Ownership (docs/architecture.md, rule 10) is enforced here, in the statements themselves: a recording, a
session and a source record can only be written by the device and patient that own them (the
first to write them). An event that touches another's is not written and comes back as `Refused`,
which the agent dead-letters with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from rtm.contract import ActivityInterval, DeviceAssignment, ImuBatch, SessionMarker, TimezoneChange
from rtm.db import Conn

OWNERSHIP = "ownership_violation"


@dataclass(frozen=True)
class Refused:
    """An event the sink would not write, and why (dead-lettered by the caller)."""

    event_id: uuid.UUID
    reason: str
    detail: str


# New batches of recordings their patient owns go into the archive and queue their recording for
# analysis, in one statement that returns the ids of the batches refused (another's recording).
_STORE_IMU = """
with incoming as (
    select * from unnest(
        %(time)s::timestamptz[], %(event_id)s::uuid[], %(patient_id)s::text[], %(episode_id)s::text[],
        %(device_id)s::text[], %(stream_id)s::text[], %(body_site)s::text[], %(rate)s::float8[],
        %(n)s::int[], %(duration)s::float8[], %(version)s::int2[], %(frame)s::bytea[], %(prov)s::jsonb[])
      as t(time, event_id, patient_id, episode_id, device_id, stream_id, body_site, sample_rate_hz,
           n_samples, duration_s, schema_version, frame, provenance)
), owned as (
    select i.* from incoming i join imu_recordings r
      on r.device_id = i.device_id and r.stream_id = i.stream_id and r.patient_id = i.patient_id
), stored as (
    insert into imu_batches (time, event_id, patient_id, episode_id, device_id, stream_id, body_site,
                             sample_rate_hz, n_samples, duration_s, schema_version, frame, provenance)
    select * from owned
    on conflict (event_id, time) do nothing
    returning device_id, stream_id, patient_id, time
), queued as (
    insert into imu_stream_queue as q (device_id, stream_id, patient_id, first_time)
    select device_id, stream_id, min(patient_id), min(time) from stored group by device_id, stream_id
    on conflict (device_id, stream_id) do update
        set last_arrival = clock_timestamp(), mark_seq = nextval('imu_stream_mark_seq'),
            first_time = least(q.first_time, excluded.first_time)
    returning 1
)
select (select count(*) from queued),
       array(select event_id from incoming except select event_id from owned)::text[]
"""


# A new recording becomes its first batch's patient's (sorted: concurrent claims lock in one order).
_CLAIM_RECORDINGS = """
insert into imu_recordings (device_id, stream_id, patient_id)
select distinct on (d, s) d, s, p from unnest(%s::text[], %s::text[], %s::text[]) as t(d, s, p)
order by d, s, p
on conflict (device_id, stream_id) do nothing
"""


def store_imu(conn: Conn, batches: Sequence[tuple[ImuBatch, bytes]]) -> list[Refused]:
    """Archive IMU batches and queue their recordings; a new recording becomes the patient's of its
    first batch, and a batch of another patient's recording is refused."""
    if not batches:
        return []
    conn.execute(_CLAIM_RECORDINGS, ([b.provenance.device_id for b, _ in batches], [b.stream_id for b, _ in batches],
                                     [b.patient_id for b, _ in batches]))
    cols: dict[str, list[Any]] = {k: [] for k in ("time", "event_id", "patient_id", "episode_id", "device_id",
                                                 "stream_id", "body_site", "rate", "n", "duration", "version",
                                                 "frame", "prov")}
    for b, frame in batches:
        for key, value in (
            ("time", b.t0), ("event_id", b.id), ("patient_id", b.patient_id), ("episode_id", b.episode_id),
            ("device_id", b.provenance.device_id), ("stream_id", b.stream_id), ("body_site", b.body_site.value),
            ("rate", b.sample_rate_hz), ("n", b.n_samples), ("duration", b.duration_s()),
            ("version", b.schema_version), ("frame", frame), ("prov", Jsonb(b.provenance.model_dump(mode="json"))),
        ):
            cols[key].append(value)
    row = conn.execute(_STORE_IMU, cols).fetchone()
    refused = {uuid.UUID(e) for e in (row[1] if row else [])}
    return [Refused(b.id, OWNERSHIP, f"recording {b.provenance.device_id}/{b.stream_id} belongs to another patient")
            for b, _ in batches if b.id in refused]


@dataclass(frozen=True)
class ChangedSpan:
    """A device's data changed somewhere in [start, end): derived rows there need recomputing."""

    patient_id: str
    device_id: str
    start: datetime
    end: datetime


_STORE_ACTIVITY = """
insert into activity_intervals as a (time, end_time, event_id, patient_id, episode_id, device_id, source,
                                     source_record_id, steps, active_minutes, zone_offset_s, deleted, provenance)
select * from unnest(%s::timestamptz[], %s::timestamptz[], %s::uuid[], %s::text[], %s::text[], %s::text[],
                     %s::text[], %s::text[], %s::int[], %s::float8[], %s::int[], %s::bool[], %s::jsonb[])
on conflict (event_id, time) do update
    set end_time = excluded.end_time, steps = excluded.steps, active_minutes = excluded.active_minutes,
        zone_offset_s = excluded.zone_offset_s, deleted = excluded.deleted, provenance = excluded.provenance
    -- A source may edit or withdraw its record later (same id); an identical repeat changes nothing.
    where (a.end_time, a.steps, a.active_minutes, a.deleted)
          is distinct from (excluded.end_time, excluded.steps, excluded.active_minutes, excluded.deleted)
returning patient_id, device_id, time, end_time
"""

# New records become their first version's (device, patient)'s; then every record of the batch is
# locked in one order (so concurrent batches cannot deadlock) and read with its version in force.
_CLAIM_RECORDS = """
insert into activity_records (event_id, patient_id, device_id, time, end_time)
select * from unnest(%s::uuid[], %s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[]) order by 1
on conflict (event_id) do nothing
"""
_LOCK_RECORDS = """
select event_id, patient_id, device_id, time from activity_records
where event_id = any(%s::uuid[]) order by event_id for update
"""
# An edit that moved the start, or a deletion: the version in force until now is withdrawn.
_WITHDRAW_VERSIONS = """
update activity_intervals a set deleted = true
from unnest(%s::uuid[], %s::timestamptz[]) as v(event_id, time)
where a.event_id = v.event_id and a.time = v.time and not a.deleted
returning a.patient_id, a.device_id, a.time, a.end_time
"""
_SET_VERSIONS = """
update activity_records r set time = v.time, end_time = v.end_time
from unnest(%s::uuid[], %s::timestamptz[], %s::timestamptz[]) as v(event_id, time, end_time)
where r.event_id = v.event_id and (r.time, r.end_time) is distinct from (v.time, v.end_time)
"""


def store_activity(conn: Conn, intervals: Sequence[ActivityInterval]) -> tuple[list[ChangedSpan], list[Refused]]:
    """Store step intervals; an edit replaces its record's version in force (whatever its start), a
    deletion withdraws it. Return the spans whose data changed and the events refused."""
    # One statement may touch a row once: of several versions of a record in one batch (an edit,
    # a withdrawal), the latest in the stream wins, as it would across batches.
    intervals = list({iv.id: iv for iv in intervals}.values())
    if not intervals:
        return [], []
    conn.execute(_CLAIM_RECORDS, (
        [iv.id for iv in intervals], [iv.patient_id for iv in intervals],
        [iv.provenance.device_id for iv in intervals], [iv.start for iv in intervals], [iv.end for iv in intervals],
    ))
    current = {row[0]: row[1:] for row in conn.execute(_LOCK_RECORDS, ([iv.id for iv in intervals],)).fetchall()}
    refused: list[Refused] = []
    accepted: list[ActivityInterval] = []
    for iv in intervals:
        patient, device, _ = current[iv.id]
        if (patient, device) != (iv.patient_id, iv.provenance.device_id):
            refused.append(Refused(iv.id, OWNERSHIP, f"record {iv.source}/{iv.source_record_id or iv.start} "
                                                     f"of device {device} belongs to another patient or device"))
        else:
            accepted.append(iv)
    if not accepted:
        return [], refused
    moved = [(iv.id, current[iv.id][2]) for iv in accepted if current[iv.id][2] != iv.start]
    rows = conn.execute(_WITHDRAW_VERSIONS, ([m[0] for m in moved], [m[1] for m in moved])).fetchall() if moved else []
    columns = list(zip(*[
        (iv.start, iv.end, iv.id, iv.patient_id, iv.episode_id, iv.provenance.device_id, iv.source,
         iv.source_record_id, iv.steps, iv.active_minutes, iv.zone_offset_s, iv.deleted,
         Jsonb(iv.provenance.model_dump(mode="json")))
        for iv in accepted
    ], strict=True))
    rows += conn.execute(_STORE_ACTIVITY, [list(c) for c in columns]).fetchall()
    conn.execute(_SET_VERSIONS, ([iv.id for iv in accepted], [iv.start for iv in accepted],
                                 [iv.end for iv in accepted]))
    return [ChangedSpan(p, d, s, e) for p, d, s, e in rows], refused


_STORE_SESSION = """
insert into exercise_sessions as s (session_id, patient_id, episode_id, device_id, exercise, body_site,
                                    started_at, ended_at, prescribed_sets, prescribed_reps)
values (%(session_id)s, %(patient_id)s, %(episode_id)s, %(device_id)s, %(exercise)s, %(body_site)s,
        %(started_at)s, %(ended_at)s, %(sets)s, %(reps)s)
on conflict (session_id) do update set
    started_at = coalesce(excluded.started_at, s.started_at),
    ended_at = coalesce(excluded.ended_at, s.ended_at),
    prescribed_sets = coalesce(excluded.prescribed_sets, s.prescribed_sets),
    prescribed_reps = coalesce(excluded.prescribed_reps, s.prescribed_reps)
-- session_id is global: only the device and patient that opened the session may change it.
where s.patient_id = excluded.patient_id and s.device_id = excluded.device_id
  and (s.started_at, s.ended_at) is distinct from
      (coalesce(excluded.started_at, s.started_at), coalesce(excluded.ended_at, s.ended_at))
returning patient_id, device_id, started_at, ended_at
"""

# Recordings of the session's device within its window: analysed (again) now that the
# session, and so the exercise, is known.
_QUEUE_SESSION_STREAMS = """
insert into imu_stream_queue as q (device_id, stream_id, patient_id, first_time)
select device_id, stream_id, min(patient_id), min(time) from imu_batches
where patient_id = %s and device_id = %s and time >= %s and time <= %s
group by device_id, stream_id
on conflict (device_id, stream_id) do update
    set last_arrival = clock_timestamp(), mark_seq = nextval('imu_stream_mark_seq')
"""


def store_sessions(conn: Conn, markers: Sequence[SessionMarker], margin_s: float,
                   max_session_s: float) -> list[Refused]:
    refused: list[Refused] = []
    for m in markers:
        row = conn.execute(_STORE_SESSION, {
            "session_id": m.session_id, "patient_id": m.patient_id, "episode_id": m.episode_id,
            "device_id": m.provenance.device_id, "exercise": m.exercise.value, "body_site": m.body_site.value,
            "started_at": m.at if m.phase == "start" else None, "ended_at": m.at if m.phase == "end" else None,
            "sets": m.prescribed_sets, "reps": m.prescribed_reps,
        }).fetchone()
        if row is None:  # a repeat, or another's session (the statement above left it alone)
            owner = conn.execute("select patient_id, device_id from exercise_sessions where session_id = %s",
                                 (m.session_id,)).fetchone()
            if owner is not None and tuple(owner) != (m.patient_id, m.provenance.device_id):
                refused.append(Refused(m.id, OWNERSHIP, f"session {m.session_id} belongs to another device or "
                                                        "patient"))
            continue
        patient, device, start, end = row
        lo, hi = session_window(start, end, margin_s, max_session_s)
        conn.execute(_QUEUE_SESSION_STREAMS, (patient, device, lo, hi))
    return refused


def session_window(started: datetime | None, ended: datetime | None, margin_s: float,
                   max_session_s: float) -> tuple[datetime, datetime]:
    """The span whose recordings belong to a session; an open end is bounded by the longest session."""
    margin, longest = timedelta(seconds=margin_s), timedelta(seconds=max_session_s)
    if started is None and ended is None:
        raise ValueError("a session needs a start or an end")
    if started is not None:
        first = started
        last = ended if ended is not None else started + longest
    else:
        assert ended is not None
        first, last = ended - longest, ended
    return first - margin, last + margin


def store_timezones(conn: Conn, changes: Sequence[TimezoneChange]) -> list[tuple[str, datetime]]:
    """Record zone changes; return (patient, from) for each that changed the history."""
    changed = []
    for c in changes:
        row = conn.execute(
            """insert into patient_timezones as z (patient_id, effective_from, tz, event_id)
               values (%s, %s, %s, %s)
               on conflict (patient_id, effective_from) do update set tz = excluded.tz, event_id = excluded.event_id
               where z.tz is distinct from excluded.tz
               returning patient_id, effective_from""",
            (c.patient_id, c.effective_from, c.tz, c.id),
        ).fetchone()
        if row:
            changed.append((str(row[0]), row[1]))
    return changed


def store_assignments(conn: Conn, changes: Sequence[DeviceAssignment]) -> list[tuple[str, datetime]]:
    """Open or close a device's assignment to an episode; return (patient, from) for each change."""
    changed = []
    for a in changes:
        if a.action == "assign":
            row = conn.execute(
                """insert into device_assignments (device_id, episode_id, patient_id, body_site, valid_from, event_id)
                   values (%s, %s, %s, %s, %s, %s) on conflict (device_id, valid_from) do nothing
                   returning patient_id""",
                (a.device_id, a.episode_id, a.patient_id, a.body_site.value, a.at, a.id),
            ).fetchone()
        else:
            row = conn.execute(
                """update device_assignments set valid_to = %s
                   where device_id = %s and episode_id = %s and valid_from < %s
                     and (valid_to is null or valid_to > %s)
                   returning patient_id""",
                (a.at, a.device_id, a.episode_id, a.at, a.at),
            ).fetchone()
        if row:
            changed.append((str(row[0]), a.at))
    return changed
