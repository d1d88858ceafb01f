"""Data-day facts: per patient, patient-local calendar date and device, what qualifying data exists.

This is the one data-day rule of the project: billing counts the `qualifying` flag written here.
Rebuilt from stored facts, never counted in a stream window. Each instant is dated in the time
zone in force for the patient at that instant (PostgreSQL's `AT TIME ZONE` applies DST). What
counts and how data before the first recorded zone is dated are the `[data_day]` settings of the
payer policy of the patient's latest episode (docs/eligibility.md). A day's facts are replaced as
a whole, so late data, edits and withdrawals all flow through; the eligibility engine's triggers
see each real change and queue the patient for recomputation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from eligibility.policy import DEFAULT_POLICY, DataDayRule, PolicyError, load_policy
from rtm.db import Conn

# Local dates reach at most 14 h either side of UTC: with this much context around the changed
# span, every local date recomputed below is seen whole.
_CONTEXT = timedelta(days=3)
LOCK_SPACE = 0x44415953  # advisory-lock namespace of day-facts rebuilds
MAX_REFS = 50  # per source and day: enough to audit, bounded in size

_REBUILD = """
with zones as (
    -- `first` zones also cover every earlier instant (policy before_first_zone = first_zone).
    select tz, effective_from,
           lead(effective_from) over (order by effective_from) as until,
           row_number() over (order by effective_from) = 1 and %(extend_first)s as first
    from patient_timezones where patient_id = %(patient)s
    union all
    select 'UTC', '-infinity', null, true
    where not exists (select 1 from patient_timezones where patient_id = %(patient)s)
    union all  -- before_first_zone = utc
    select 'UTC', '-infinity', min(effective_from), false
    from patient_timezones where patient_id = %(patient)s
    having %(utc_before)s and count(*) > 0
), minutes as (
    -- A day on which the patient moved zones is one day: it keeps the zone of its first data.
    select m.device_id, (m.time at time zone z.tz)::date as local_date, (array_agg(z.tz order by m.time))[1] as tz,
           count(*) filter (where m.worn) as wear_minutes, sum(m.steps) as steps, count(*) as minutes,
           -- what may make the day (policy data_day): steps and records not marked unworn ...
           coalesce(sum(m.steps) filter (where %(unworn)s or m.worn is distinct from false), 0) as counted_steps,
           count(*) filter (where %(unworn)s or m.worn is distinct from false) as counted_records,
           -- ... and minutes whose record had steps although their rounded share is 0
           count(*) filter (where %(record_steps)s and m.steps = 0 and m.method = 'interval'
                              and (%(unworn)s or m.worn is distinct from false)
                              and exists (select 1 from activity_intervals i
                                          where i.patient_id = m.patient_id and i.device_id = m.device_id
                                            and not i.deleted and i.steps > 0
                                            and i.time < m.time + interval '1 minute' and i.end_time > m.time))
               as split_minutes,
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
    where s.patient_id = %(patient)s and s.time >= %(lo)s and s.time < %(hi)s
      and (s.rep_count > 0 or %(zero_rep_sets)s)
    group by 1, 2
), days as (
    select coalesce(m.device_id, s.device_id) as device_id, coalesce(m.local_date, s.local_date) as local_date,
           coalesce(m.tz, s.tz) as tz, coalesce(m.wear_minutes, 0) as wear_minutes,
           coalesce(s.sets, 0) as sets, coalesce(m.steps, 0) as steps,
           coalesce(m.wear_minutes, 0) > 0 or coalesce(s.sets, 0) > 0 or coalesce(m.counted_steps, 0) > 0
             or coalesce(m.split_minutes, 0) > 0 or (%(zero_step_records)s and coalesce(m.counted_records, 0) > 0)
             as qualifying,
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
           d.qualifying, d.refs, now()
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


_POLICIES = """select distinct on (patient_id) patient_id, payer_policy from episodes
                where patient_id = any(%s) order by patient_id, start_date desc, episode_id desc"""


def rule_params(rule: DataDayRule) -> dict[str, bool]:
    """The rebuild query's parameters for a policy's data-day rule."""
    return {
        "zero_step_records": rule.zero_step_records, "zero_rep_sets": rule.zero_rep_sets,
        "unworn": rule.unworn_minutes, "record_steps": rule.split_minute == "record_steps",
        "extend_first": rule.before_first_zone == "first_zone", "utc_before": rule.before_first_zone == "utc",
    }


def patient_rules(conn: Conn, patients: list[str]) -> dict[str, DataDayRule]:
    """Each patient's data-day rule: that of the policy of their latest episode (the default
    policy's when they have none or it names an unknown policy, which the engine then refuses)."""
    default = load_policy(DEFAULT_POLICY).data_day
    rules = dict.fromkeys(patients, default)
    for patient, policy_id in conn.execute(_POLICIES, (patients,)).fetchall():
        with contextlib.suppress(PolicyError):  # an unknown policy: the engine refuses the episode
            rules[patient] = load_policy(policy_id).data_day
    return rules


@dataclass(frozen=True)
class DayChange:
    patient_id: str
    start: datetime
    end: datetime


def rebuild_day_facts(conn: Conn, changes: Iterable[DayChange], rule: DataDayRule | None = None) -> int:
    """Recompute every local date that [start, end) touches, per patient; return rows changed.

    `rule` overrides each patient's policy rule (tests, what-if runs)."""
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
    rules = dict.fromkeys(patients, rule) if rule else patient_rules(conn, patients)
    for patient in patients:
        start, end = by_patient[patient]
        # Any local date that overlaps [start, end) lies within one day of its UTC dates.
        first_day = (start - timedelta(days=1)).date()
        last_day = (end + timedelta(days=1)).date()
        row = conn.execute(_REBUILD, {
            "patient": patient, "lo": start - _CONTEXT, "hi": end + _CONTEXT, "first_day": first_day,
            "last_day": last_day, "max_refs": MAX_REFS, **rule_params(rules[patient]),
        }).fetchone()
        changed += int(row[0]) + int(row[1]) if row else 0
    return changed
