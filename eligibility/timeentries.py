"""Therapist time: timers, manual entries, corrections and voids, with an audit trail.

An entry is never edited in place: a correction is a new entry that supersedes the old one, and a
void marks an entry as logged in error. The audit table (filled by a trigger, whoever writes)
keeps every version. An entry counts once: ids are idempotent, only the newest link of a
correction chain counts, and overlapping minutes of one practitioner count once (engine).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rtm.contract.base import AwareDatetime, Identifier, Provenance
from rtm.contract.clinical import TherapistTimeEntry, TimeActivity, TimeChannel
from rtm.db import Conn
from rtm.errors import CodedError

Minutes = Annotated[Decimal, Field(gt=0, le=24 * 60, max_digits=7, decimal_places=2)]
_PROVENANCE = {"adapter": "eligibility-time-api", "vendor": "rtm"}


class TimeEntryError(CodedError, ValueError):
    """A request the time-entry API refuses, with the reason."""


class TimeEntryConflict(TimeEntryError):
    """The request contradicts what is on record (an entry, correction, void or running timer)."""

    code = "conflict"


class NewTimeEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    patient_id: Identifier
    episode_id: Identifier
    practitioner_id: Identifier
    activity: TimeActivity
    channel: TimeChannel
    started_at: AwareDatetime
    minutes: Minutes
    service_date: date | None = None
    other_service: Annotated[str, Field(max_length=64)] | None = None
    entry_id: Identifier | None = None  # give one to make retries idempotent


class Correction(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: Annotated[str, Field(min_length=3, max_length=500)]
    activity: TimeActivity | None = None
    channel: TimeChannel | None = None
    started_at: AwareDatetime | None = None
    minutes: Minutes | None = None
    service_date: date | None = None
    episode_id: Identifier | None = None
    other_service: Annotated[str, Field(max_length=64)] | None = None
    entry_id: Identifier | None = None


class StoredEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    entry_id: str
    patient_id: str
    episode_id: str
    practitioner_id: str
    practitioner_role: str
    discipline: str | None
    activity: str
    channel: str
    started_at: datetime
    minutes: Decimal
    service_date: date | None
    supersedes: str | None
    superseded_by: str | None
    voided_at: datetime | None
    change_reason: str | None
    other_service: str | None
    recorded_at: datetime
    recorded_by: str | None


_SELECT = """
select e.entry_id, e.patient_id, e.episode_id, e.practitioner_id, e.practitioner_role, e.discipline,
       e.activity, e.channel, e.started_at, e.minutes, e.service_date, e.supersedes,
       (select max(c.entry_id) from therapist_time_entries c
         where c.supersedes = e.entry_id) as superseded_by,
       e.voided_at, e.change_reason, e.other_service, e.recorded_at, e.recorded_by
  from therapist_time_entries e"""


def _stored(row: tuple[Any, ...]) -> StoredEntry:
    return StoredEntry.model_validate(dict(zip(StoredEntry.model_fields, row, strict=True)))


def get_entry(conn: Conn, entry_id: str) -> StoredEntry:
    row = conn.execute(_SELECT + " where e.entry_id = %s", (entry_id,)).fetchone()
    if row is None:
        raise TimeEntryError(f"no time entry {entry_id}")
    return _stored(row)


def _set_actor(conn: Conn, actor: str | None) -> None:
    # Read by the audit trigger; local to the transaction.
    conn.execute("select set_config('rtm.actor', %s, true)", (actor or "",))


def _practitioner(conn: Conn, practitioner_id: str) -> tuple[str, str | None, str]:
    row = conn.execute(
        "select role, discipline, clinic_id from practitioners where practitioner_id = %s", (practitioner_id,)
    ).fetchone()
    if row is None:
        raise TimeEntryError(f"unknown practitioner {practitioner_id}")
    return str(row[0]), row[1], str(row[2])


def _check_episode(conn: Conn, patient_id: str, episode_id: str, clinic_id: str) -> None:
    row = conn.execute(
        "select patient_id, clinic_id from episodes where episode_id = %s", (episode_id,)
    ).fetchone()
    if row is None or row[0] != patient_id:
        raise TimeEntryError(f"episode {episode_id} is not an episode of patient {patient_id}")
    if row[1] != clinic_id:
        raise TimeEntryError("the practitioner does not belong to the episode's clinic")


def _new_id() -> str:
    return f"te-{uuid.uuid4().hex[:16]}"


def _event(
    e: NewTimeEntry, entry_id: str, role: str, discipline: str | None, supersedes: str | None
) -> TherapistTimeEntry:
    """The shared contract validates it exactly as an event from the stream would be."""
    return TherapistTimeEntry(
        patient_id=e.patient_id,
        provenance=Provenance(device_id=e.practitioner_id, **_PROVENANCE),
        entry_id=entry_id,
        episode_id=e.episode_id,
        practitioner_id=e.practitioner_id,
        practitioner_role=role,
        discipline=discipline,
        activity=e.activity,
        channel=e.channel,
        started_at=e.started_at,
        minutes=float(e.minutes),
        service_date=e.service_date,
        supersedes=supersedes,
    )


def _insert(
    conn: Conn, e: NewTimeEntry, supersedes: str | None, actor: str | None, note: str | None
) -> StoredEntry:
    role, discipline, clinic = _practitioner(conn, e.practitioner_id)
    _check_episode(conn, e.patient_id, e.episode_id, clinic)
    entry_id = e.entry_id or _new_id()
    try:
        event = _event(e, entry_id, role, discipline, supersedes)
    except ValidationError as exc:
        raise TimeEntryError("; ".join(err["msg"] for err in exc.errors())) from exc
    inserted = conn.execute(
        """insert into therapist_time_entries (entry_id, event_id, patient_id, episode_id, practitioner_id,
               practitioner_role, discipline, activity, channel, started_at, minutes, service_date,
               supersedes, other_service, change_reason, recorded_by)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           on conflict (entry_id) do nothing returning entry_id""",
        (
            entry_id, event.id, e.patient_id, e.episode_id, e.practitioner_id, role, discipline,
            e.activity.value, e.channel.value, e.started_at, e.minutes, e.service_date, supersedes,
            e.other_service, note, actor,
        ),
    ).fetchone()  # fmt: skip
    stored = get_entry(conn, entry_id)
    if inserted is None and not _same(stored, e, supersedes):
        raise TimeEntryConflict(f"time entry {entry_id} already exists with different content")
    return stored


def _same(s: StoredEntry, e: NewTimeEntry, supersedes: str | None) -> bool:
    mine = (e.patient_id, e.episode_id, e.practitioner_id, e.activity.value, e.channel.value, e.started_at)
    theirs = (s.patient_id, s.episode_id, s.practitioner_id, s.activity, s.channel, s.started_at)
    return mine == theirs and (e.minutes, e.service_date, supersedes) == (
        s.minutes,
        s.service_date,
        s.supersedes,
    )


def add_entry(conn: Conn, entry: NewTimeEntry, actor: str | None = None) -> StoredEntry:
    """Record minutes; the same entry_id sent twice is stored once."""
    with conn.transaction():
        _set_actor(conn, actor)
        return _insert(conn, entry, None, actor, None)


def correct_entry(conn: Conn, entry_id: str, fix: Correction, actor: str | None = None) -> StoredEntry:
    """Replace an entry by a corrected copy; the old one stays on record and stops counting."""
    with conn.transaction():
        _set_actor(conn, actor)
        old = get_entry(conn, entry_id)
        conn.execute("select 1 from therapist_time_entries where entry_id = %s for update", (entry_id,))
        if old.superseded_by:
            raise TimeEntryConflict(
                f"entry {entry_id} was already corrected by {old.superseded_by}; correct that one"
            )
        if old.voided_at:
            raise TimeEntryError(f"entry {entry_id} is voided")
        new = NewTimeEntry(
            patient_id=old.patient_id,
            episode_id=fix.episode_id or old.episode_id,
            practitioner_id=old.practitioner_id,
            activity=fix.activity or TimeActivity(old.activity),
            channel=fix.channel or TimeChannel(old.channel),
            started_at=fix.started_at or old.started_at,
            minutes=fix.minutes or old.minutes,
            service_date=fix.service_date or old.service_date,
            other_service=fix.other_service or old.other_service,
            entry_id=fix.entry_id,
        )
        return _insert(conn, new, entry_id, actor, fix.reason)


def void_entry(conn: Conn, entry_id: str, reason: str, actor: str | None = None) -> StoredEntry:
    """Mark an entry as logged in error (it stays on record, never counts)."""
    if len(reason.strip()) < 3:
        raise TimeEntryError("a void needs a reason")
    with conn.transaction():
        _set_actor(conn, actor)
        row = conn.execute(
            """update therapist_time_entries set voided_at = now(), change_reason = %s
                where entry_id = %s and voided_at is null returning entry_id""",
            (reason, entry_id),
        ).fetchone()
        if row is None:
            get_entry(conn, entry_id)  # raises when unknown
            raise TimeEntryConflict(f"entry {entry_id} is already voided")
        return get_entry(conn, entry_id)


def list_entries(
    conn: Conn,
    patient_id: str,
    month: date | None = None,
    include_replaced: bool = False,
    clinic_id: str | None = None,
) -> list[StoredEntry]:
    """A patient's entries (only those of episodes of `clinic_id`, when given)."""
    sql = _SELECT + " where e.patient_id = %s"
    params: list[Any] = [patient_id]
    if clinic_id is not None:
        sql += " and e.episode_id in (select episode_id from episodes where clinic_id = %s)"
        params.append(clinic_id)
    if month is not None:
        sql += " and date_trunc('month', coalesce(e.service_date, e.started_at::date)) = %s"
        params.append(month.replace(day=1))
    rows = [_stored(r) for r in conn.execute(sql + " order by e.started_at, e.entry_id", params)]
    if include_replaced:
        return rows
    return [r for r in rows if r.superseded_by is None and r.voided_at is None]


def history(conn: Conn, entry_id: str) -> list[dict[str, Any]]:
    """The audit trail of an entry and of the corrections that replaced it."""
    rows = conn.execute(
        """with recursive chain(entry_id) as (
               select %s::text
               union select e.entry_id from therapist_time_entries e
                       join chain c on e.supersedes = c.entry_id)
           select a.audit_id, a.entry_id, a.action, a.actor, a.at, a.old_row, a.new_row
             from therapist_time_entry_audit a join chain using (entry_id) order by a.audit_id""",
        (entry_id,),
    ).fetchall()
    keys = ("audit_id", "entry_id", "action", "actor", "at", "old_row", "new_row")
    return [dict(zip(keys, r, strict=True)) for r in rows]


# ------------------------------------------------------------------------------ timers ----------


class TimerStart(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    patient_id: Identifier
    episode_id: Identifier
    practitioner_id: Identifier
    activity: TimeActivity
    channel: TimeChannel
    at: AwareDatetime | None = None


def start_timer(conn: Conn, req: TimerStart, actor: str | None = None) -> str:
    """Start a timer; a practitioner has at most one running."""
    with conn.transaction():
        _, _, clinic = _practitioner(conn, req.practitioner_id)
        _check_episode(conn, req.patient_id, req.episode_id, clinic)
        running = conn.execute(
            "select timer_id from therapist_timers where practitioner_id = %s and stopped_at is null",
            (req.practitioner_id,),
        ).fetchone()
        if running:
            raise TimeEntryConflict(f"practitioner already has timer {running[0]} running; stop it first")
        timer_id = f"tm-{uuid.uuid4().hex[:16]}"
        conn.execute(
            """insert into therapist_timers (timer_id, patient_id, episode_id, practitioner_id, activity,
                   channel, started_at) values (%s, %s, %s, %s, %s, %s, %s)""",
            (
                timer_id, req.patient_id, req.episode_id, req.practitioner_id, req.activity.value,
                req.channel.value, req.at or datetime.now(UTC),
            ),
        )  # fmt: skip
        return timer_id


def stop_timer(
    conn: Conn, timer_id: str | None = None, practitioner_id: str | None = None, at: datetime | None = None,
    actor: str | None = None,
) -> StoredEntry:  # fmt: skip
    """Stop a timer (by id, or the practitioner's running one) and record its minutes as an entry."""
    with conn.transaction():
        _set_actor(conn, actor)
        row = conn.execute(
            """select timer_id, patient_id, episode_id, practitioner_id, activity, channel, started_at
                 from therapist_timers
                where stopped_at is null and (timer_id = %s or (%s::text is null and practitioner_id = %s))
                for update""",
            (timer_id, timer_id, practitioner_id),
        ).fetchone()
        if row is None:
            raise TimeEntryError("no running timer")
        tid, patient, episode, practitioner, activity, channel, started = row
        stopped = at or datetime.now(UTC)
        minutes = Decimal((stopped - started).total_seconds() / 60).quantize(Decimal("0.01"))
        if minutes <= 0:
            raise TimeEntryError("a timer must run for some time")
        if minutes > 24 * 60:
            raise TimeEntryError("the timer ran for more than 24 hours; record the minutes as an entry instead")
        entry = _insert(
            conn,
            NewTimeEntry(
                patient_id=patient, episode_id=episode, practitioner_id=practitioner, activity=activity,
                channel=channel, started_at=started, minutes=minutes, entry_id=f"{tid}-entry",
            ),
            None, actor, None,
        )  # fmt: skip
        conn.execute(
            "update therapist_timers set stopped_at = %s, entry_id = %s where timer_id = %s",
            (stopped, entry.entry_id, tid),
        )
        return entry
