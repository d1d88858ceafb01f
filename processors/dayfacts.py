"""Data-day facts: per patient, patient-local calendar date and device, what qualifying data exists.

Rebuilt from stored facts (docs/architecture.md, rule 2), never counted in a stream window. Each instant
is dated in the time zone in force for the patient at that instant (rule 3; PostgreSQL's
`AT TIME ZONE` applies DST); before the first recorded zone, the first one applies. A day's
facts are replaced as a whole, so late data, edits and withdrawals all flow through; the
eligibility engine's triggers see each real change and queue the patient for recomputation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rtm.db import Conn

# Local dates reach at most 14 h either side of UTC: with this much context around the changed
# span, every local date recomputed below is seen whole.
_CONTEXT = timedelta(days=3)
LOCK_SPACE = 0x44415953  # advisory-lock namespace of day-facts rebuilds
MAX_REFS = 50  # per source and day: enough to audit, bounded in size

_REBUILD = """
with zones as (
    select tz, effective_from,
           lead(effective_from) over (order by effective_from) as until,
           row_number() over (order by effective_from) = 1 as first
    from patient_timezones where patient_id = %(patient)s
    union all
    select 'UTC', '-infinity', null, true
    where not exists (select 1 from patient_timezones where patient_id = %(patient)s)
), minutes as (
    -- A day on which the patient moved zones is one day: it keeps the zone of its first data.
    select m.device_id, (m.time at time zone z.tz)::date as local_date, (array_agg(z.tz order by m.time))[1] as tz,
           count(*) filter (where m.worn) as wear_minutes, sum(m.steps) as steps, count(*) as minutes,
           min(m.time) as first_time, max(m.time) as last_time
    from activity_minutes m join zones z
      on (z.first or m.time >= z.effective_from) and (z.until is null or m.time < z.until)
    where m.patient_id = %(patient)s and m.time >= %(lo)s and m.time < %(hi)s
    group by 1, 2
), sets as (
    select s.device_id, (s.time at time zone z.tz)::date as local_date, (array_agg(z.tz order by s.time))[1] as tz,
           count(*) as sets,
           (array_agg(s.set_id::text order by s.time))[1:%(max_refs)s] as set_ids
    from exercise_sets s join zones z
      on (z.first or s.time >= z.effective_from) and (z.until is null or s.time < z.until)
    where s.patient_id = %(patient)s and s.time >= %(lo)s and s.time < %(hi)s and s.rep_count > 0
    group by 1, 2
), days as (
    select coalesce(m.device_id, s.device_id) as device_id, coalesce(m.local_date, s.local_date) as local_date,
           coalesce(m.tz, s.tz) as tz, coalesce(m.wear_minutes, 0) as wear_minutes,
           coalesce(s.sets, 0) as sets, coalesce(m.steps, 0) as steps,
           jsonb_strip_nulls(jsonb_build_object(
               'exercise_sets', to_jsonb(s.set_ids),
               'activity_minutes', case when m.minutes is not null then jsonb_build_object(
                   'minutes', m.minutes, 'first', m.first_time, 'last', m.last_time) end)) as refs
    from minutes m full join sets s on m.device_id = s.device_id and m.local_date = s.local_date
    where coalesce(m.local_date, s.local_date) between %(first_day)s and %(last_day)s
), episode as (
    select d.device_id, d.local_date, (
        select a.episode_id from device_assignments a
        where a.device_id = d.device_id and a.patient_id = %(patient)s
          and a.valid_from < (d.local_date + 1)::timestamp at time zone d.tz
          and (a.valid_to is null or a.valid_to > d.local_date::timestamp at time zone d.tz)
        order by a.valid_from desc limit 1) as episode_id
    from days d
), upserted as (
    insert into data_day_facts as f (local_date, patient_id, device_id, episode_id, tz, wear_minutes,
                                     exercise_sets, steps, qualifying, record_refs, updated_at)
    select d.local_date, %(patient)s, d.device_id, e.episode_id, d.tz, d.wear_minutes, d.sets, d.steps,
           d.wear_minutes > 0 or d.sets > 0 or d.steps > 0, d.refs, now()
    from days d join episode e using (device_id, local_date)
    on conflict (patient_id, local_date, device_id) do update set
        episode_id = excluded.episode_id, tz = excluded.tz, wear_minutes = excluded.wear_minutes,
        exercise_sets = excluded.exercise_sets, steps = excluded.steps, qualifying = excluded.qualifying,
        record_refs = excluded.record_refs, updated_at = excluded.updated_at
    where (f.episode_id, f.tz, f.wear_minutes, f.exercise_sets, f.steps, f.qualifying, f.record_refs)
          is distinct from (excluded.episode_id, excluded.tz, excluded.wear_minutes, excluded.exercise_sets,
                            excluded.steps, excluded.qualifying, excluded.record_refs)
    returning 1
), removed as (
    delete from data_day_facts f
    where f.patient_id = %(patient)s and f.local_date between %(first_day)s and %(last_day)s
      and not exists (select 1 from days d where d.device_id = f.device_id and d.local_date = f.local_date)
    returning 1
)
select (select count(*) from upserted), (select count(*) from removed)
"""


@dataclass(frozen=True)
class DayChange:
    patient_id: str
    start: datetime
    end: datetime


def rebuild_day_facts(conn: Conn, changes: Iterable[DayChange]) -> int:
    """Recompute every local date that [start, end) touches, per patient; return rows changed."""
    by_patient: dict[str, tuple[datetime, datetime]] = {}
    for c in changes:
        lo, hi = by_patient.get(c.patient_id, (c.start, c.end))
        by_patient[c.patient_id] = (min(lo, c.start), max(hi, c.end))
    changed = 0
    patients = sorted(by_patient)
    # Serialise rebuilds per patient: two transactions that each changed a different input (say
    # a time-zone change and new steps) must not each rebuild without seeing the other's change.
    # The later one waits here until the earlier has committed, and so sees both.
    conn.execute("select pg_advisory_xact_lock(%s, hashtext(p)) from unnest(%s::text[]) as p order by p",
                 (LOCK_SPACE, patients))
    for patient in patients:
        start, end = by_patient[patient]
        # Any local date that overlaps [start, end) lies within one day of its UTC dates.
        first_day = (start - timedelta(days=1)).date()
        last_day = (end + timedelta(days=1)).date()
        row = conn.execute(_REBUILD, {
            "patient": patient, "lo": start - _CONTEXT, "hi": end + _CONTEXT, "first_day": first_day,
            "last_day": last_day, "max_refs": MAX_REFS,
        }).fetchone()
        changed += int(row[0]) + int(row[1]) if row else 0
    return changed
