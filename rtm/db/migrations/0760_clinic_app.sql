-- The clinic web app (dashboards/): staff accounts and sessions, the audit log of reads of patient
-- data, snoozed flags, device pairing codes, and row-level security by clinic on every table that
-- holds patient data.
--
-- The app connects as its own role ({app}) and, in every request's transaction, sets the clinic of
-- the signed-in person: `select set_config('rtm.clinic', <clinic>, true)`. Policies for {app} show
-- and accept only that clinic's rows; without the setting it sees nothing. The writer and reader
-- roles (processors, gateway, billing jobs) are created with BYPASSRLS (rtm/stack/postgres.py;
-- production creates them so too): they serve every clinic, and PostgreSQL refuses COPY FROM under
-- row-level security, which the sinks and the eligibility engine use. The owner owns the tables.

create function app_clinic() returns text
    language sql stable as $$ select nullif(current_setting('rtm.clinic', true), '') $$;

-- ---------------------------------------------------------------- staff -----------------------
-- A person who signs in. Therapists and assistants are also practitioners (same id), so that the
-- time API's actor and practitioner are the signed-in person. NPI: the 10-digit National Provider
-- Identifier (therapists; billing exports carry it).
create table app_staff (
    staff_id        text primary key,
    clinic_id       text not null references clinics,
    email           text not null unique check (email = lower(email)),
    display_name    text not null,
    role            text not null check (role in ('therapist', 'assistant', 'biller', 'admin')),
    discipline      text check (discipline in ('PT', 'OT', 'SLP')),
    npi             text check (npi ~ '^[0-9]{10}$'),
    password_hash   text not null,                      -- argon2id, PHC string
    failed_attempts integer not null default 0,
    locked_until    timestamptz,
    created_at      timestamptz not null default now(),
    disabled_at     timestamptz,
    check (role <> 'therapist' or (npi is not null and discipline is not null)),
    check (role <> 'assistant' or discipline is not null)
);
create index app_staff_clinic on app_staff (clinic_id);

-- Server-side sessions: the cookie holds a random token, the table its SHA-256 only.
create table app_sessions (
    session_hash bytea primary key,
    staff_id     text not null references app_staff,
    csrf_token   text not null,
    created_at   timestamptz not null default now(),
    last_seen_at timestamptz not null default now(),
    expires_at   timestamptz not null,
    ip           text,
    ended_at     timestamptz
);
create index app_sessions_staff on app_sessions (staff_id);

-- ---------------------------------------------------------------- audit of reads --------------
-- Every read of a patient's data by a person: who, what, when, from where. Append-only: the app
-- may insert and read, nobody may change or delete a row (the trigger refuses even the owner).
create table app_audit_log (
    audit_id   bigint generated always as identity primary key,
    at         timestamptz not null default now(),
    clinic_id  text not null references clinics,
    staff_id   text not null,
    patient_id text,
    action     text not null,       -- e.g. 'view patient', 'view queue', 'export billing csv'
    detail     text,
    ip         text,
    user_agent text
);
create index app_audit_log_clinic on app_audit_log (clinic_id, at desc);
create index app_audit_log_patient on app_audit_log (patient_id, at desc);

create function app_audit_log_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'app_audit_log is append-only (% refused)', tg_op;
end;
$$;
create trigger app_audit_log_no_change before update or delete on app_audit_log
    for each row execute function app_audit_log_append_only();
create trigger app_audit_log_no_truncate before truncate on app_audit_log
    for each statement execute function app_audit_log_append_only();

-- ---------------------------------------------------------------- snoozed flags ---------------
-- A therapist hides a flag from the queue until a time; the flag itself keeps its state.
create table app_flag_snoozes (
    flag_id    bigint primary key references therapist_flags,
    clinic_id  text not null references clinics,
    until      timestamptz not null,
    by_staff   text not null,
    created_at timestamptz not null default now()
);

-- ---------------------------------------------------------------- pairing codes ---------------
-- The app enrols a device through the gateway's enrolment and issues the hub's pairing code
-- (ingest_pairing_codes, migration 0700) with the writer role; it only reads the codes, its clinic's.

-- Patient data without a patient, episode or clinic column of its own (enabled after the grants below).
alter table ingest_pairing_codes enable row level security;
create policy by_clinic on ingest_pairing_codes to {app} using (clinic = app_clinic()) with check (clinic = app_clinic());

alter table therapist_flag_audit enable row level security;
create policy by_clinic on therapist_flag_audit to {app}
    using (flag_id in (select f.flag_id from therapist_flags f where f.clinic_id = app_clinic()));

alter table therapist_time_entry_audit enable row level security;
create policy by_clinic on therapist_time_entry_audit to {app}
    using (entry_id in (select e.entry_id from therapist_time_entries e));  -- entries: RLS of their own


-- ---------------------------------------------------------------- the app's privileges --------
grant usage on schema public to {app};
grant select on clinics, practitioners, device_models, devices, patients, episodes, device_assignments,
    patient_timezones, exercise_sessions, exercise_prescriptions, therapist_flags, therapist_flag_audit,
    therapist_time_entries, therapist_time_entry_audit, therapist_timers, eligibility_results,
    eligibility_releases, eligibility_amendments, ingest_device_credentials to {app};
grant select, insert, update on app_staff, app_sessions, app_flag_snoozes to {app};
grant select, insert on app_audit_log to {app};
grant insert, update on patients, episodes, exercise_prescriptions, patient_timezones to {app};
grant insert on practitioners, devices to {app};
grant update (display_name, discipline) on practitioners to {app};
grant select on ingest_pairing_codes to {app};
grant update on therapist_flags to {app};
grant insert, update on therapist_time_entries, therapist_timers to {app};
-- The eligibility triggers on inputs mark the patient for recomputation: as the function's owner,
-- so that whoever changes an input (the app included) needs no right on the recompute queue.
alter function eligibility_mark_dirty(text, text) security definer set search_path = public;

-- ---------------------------------------------------------------- onboarding fields -----------
-- Diagnosis codes (ICD-10-CM) of an episode, for the claim's diagnosis pointers.
alter table episodes add column diagnosis_codes text[] not null default '{}';

-- Hypertables: TimescaleDB copies a hypertable's grants to each chunk but not its row-level
-- security, so a role granted the hypertable could read every clinic's rows from a chunk by name.
-- The app therefore gets no grant on any hypertable; it reads them through these views, owned by
-- the owner, whose condition is the clinic's (security_barrier: no user function sees rows first).
create view app_data_day_facts with (security_barrier) as
    select f.* from data_day_facts f
     where f.patient_id in (select p.patient_id from patients p where p.clinic_id = app_clinic());
create view app_exercise_sets with (security_barrier) as
    select s.* from exercise_sets s
     where s.patient_id in (select p.patient_id from patients p where p.clinic_id = app_clinic());
create view app_activity_minutes with (security_barrier) as
    select m.* from activity_minutes m
     where m.patient_id in (select p.patient_id from patients p where p.clinic_id = app_clinic());
grant select on app_data_day_facts, app_exercise_sets, app_activity_minutes to {app};

-- ---------------------------------------------------------------- row-level security ----------
-- Every table with patient data the app role may touch: its clinic's rows only.
do $rls$
declare
    t record;
    expr text;
begin
    for t in
        select c.relname,
               bool_or(a.attname = 'clinic_id') as has_clinic,
               bool_or(a.attname = 'patient_id') as has_patient,
               bool_or(a.attname = 'episode_id') as has_episode
          from pg_class c
          join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public'
          join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
         where c.relkind in ('r', 'p')
           -- tables the app role has no privilege on stay closed to it without policies (the pipeline's
           -- internals, the raw archive, hypertables read through the views above)
           and (has_table_privilege(to_regrole('{app}'), c.oid, 'select') or has_table_privilege(to_regrole('{app}'), c.oid, 'insert')
                or has_table_privilege(to_regrole('{app}'), c.oid, 'update'))
           and c.relname not in ('clinics', 'practitioners', 'app_staff', 'app_sessions', 'schema_migrations',
                                 'ingest_clinic_keys', 'ingest_pairing_codes')
         group by c.relname
        having bool_or(a.attname in ('clinic_id', 'patient_id', 'episode_id'))
    loop
        expr := case
            when t.has_clinic then 'clinic_id = app_clinic()'
            when t.has_patient then 'patient_id in (select p.patient_id from patients p where p.clinic_id = app_clinic())'
            else 'episode_id in (select e.episode_id from episodes e where e.clinic_id = app_clinic())'
        end;
        execute format('alter table %I enable row level security', t.relname);
        execute format('create policy by_clinic on %I to {app} using (%s) with check (%s)', t.relname, expr, expr);
    end loop;
end
$rls$;
