-- Eligibility engine: results, releases, amendments, the recompute queue, RPM periods for the
-- overlap gate, therapist timers and the time-entry audit trail.
-- Privileges are least privilege: the writer (engine, gateway, time API) reads inputs and writes
-- results; the reader (billing jobs, dashboards) reads summaries only.

-- ---------------------------------------------------------------- recompute queue -------------
-- A patient whose inputs changed. Triggers on every input table mark the patient; the engine
-- claims rows, recomputes, and deletes a row only if no newer mark arrived meanwhile (mark_seq).
create sequence eligibility_mark_seq;
create table eligibility_dirty_patients (
    patient_id text primary key,
    mark_seq   bigint not null default nextval('eligibility_mark_seq'),
    reason     text not null,
    marked_at  timestamptz not null default now()
);

create function eligibility_mark_dirty(p_patient text, p_reason text) returns void
language sql as $$
    insert into eligibility_dirty_patients (patient_id, reason)
    values (p_patient, p_reason)
    on conflict (patient_id) do update
       set mark_seq = nextval('eligibility_mark_seq'), reason = excluded.reason, marked_at = now();
$$;

create function eligibility_mark_dirty_trigger() returns trigger
language plpgsql as $$
begin
    if tg_op in ('UPDATE', 'DELETE') then
        perform eligibility_mark_dirty(old.patient_id, tg_table_name);
    end if;
    if tg_op in ('INSERT', 'UPDATE') and (tg_op = 'INSERT' or new.patient_id is distinct from old.patient_id) then
        perform eligibility_mark_dirty(new.patient_id, tg_table_name);
    end if;
    return null;
end;
$$;

-- Facts are upserted again and again with the same content (replays): only a real change marks.
create trigger data_day_facts_dirty_ins after insert on data_day_facts
    for each row execute function eligibility_mark_dirty_trigger();
create trigger data_day_facts_dirty_upd after update on data_day_facts
    for each row when (
        old.qualifying is distinct from new.qualifying
        or old.record_refs is distinct from new.record_refs
        or old.local_date is distinct from new.local_date
        or old.device_id is distinct from new.device_id
        or old.patient_id is distinct from new.patient_id)
    execute function eligibility_mark_dirty_trigger();
create trigger data_day_facts_dirty_del after delete on data_day_facts
    for each row execute function eligibility_mark_dirty_trigger();

create trigger episodes_dirty after insert or update or delete on episodes
    for each row execute function eligibility_mark_dirty_trigger();
create trigger device_assignments_dirty after insert or update or delete on device_assignments
    for each row execute function eligibility_mark_dirty_trigger();
create trigger patient_timezones_dirty after insert or update or delete on patient_timezones
    for each row execute function eligibility_mark_dirty_trigger();
create trigger therapist_time_entries_dirty after insert or update or delete on therapist_time_entries
    for each row execute function eligibility_mark_dirty_trigger();

-- A device model losing or gaining its qualifying flag touches every patient using it.
create function eligibility_model_dirty_trigger() returns trigger
language plpgsql as $$
begin
    perform eligibility_mark_dirty(a.patient_id, 'device_models')
      from device_assignments a join devices d using (device_id)
     where d.model_id = new.model_id;
    return null;
end;
$$;
create trigger device_models_dirty after update on device_models
    for each row when (old.qualifying_medical_device is distinct from new.qualifying_medical_device)
    execute function eligibility_model_dirty_trigger();

-- ---------------------------------------------------------------- inputs ----------------------
-- RPM billed for a patient (imported from the billing system): the overlap gate reads it.
create table rpm_billing_periods (
    patient_id      text not null references patients,
    period_start    date not null,
    period_end      date not null,
    practitioner_id text,
    source          text not null default 'import',
    recorded_at     timestamptz not null default now(),
    primary key (patient_id, period_start, period_end),
    check (period_end >= period_start)
);
create trigger rpm_billing_periods_dirty after insert or update or delete on rpm_billing_periods
    for each row execute function eligibility_mark_dirty_trigger();

-- Time entries: a void (an entry logged in error) and "counted toward another billed service".
alter table therapist_time_entries
    add column voided_at    timestamptz,
    add column change_reason text,  -- why it was corrected or voided
    add column other_service text,
    add column recorded_by  text;
create index therapist_time_entries_supersedes on therapist_time_entries (supersedes);

-- A running timer; stopping it writes a time entry.
create table therapist_timers (
    timer_id        text primary key,
    patient_id      text not null references patients,
    episode_id      text not null references episodes,
    practitioner_id text not null references practitioners,
    activity        text not null,
    channel         text not null,
    started_at      timestamptz not null,
    stopped_at      timestamptz,
    entry_id        text references therapist_time_entries
);
create unique index therapist_timers_running on therapist_timers (practitioner_id) where stopped_at is null;

-- Every change to a time entry, whoever made it (API, CLI or the stream sink): the audit trail.
create table therapist_time_entry_audit (
    audit_id   bigserial primary key,
    entry_id   text not null,
    action     text not null check (action in ('create', 'update', 'delete')),
    actor      text,
    at         timestamptz not null default now(),
    old_row    jsonb,
    new_row    jsonb
);
create index therapist_time_entry_audit_entry on therapist_time_entry_audit (entry_id, audit_id);

-- Security definer: the writer cannot write the audit table itself, only through this trigger.
create function therapist_time_entry_audit_trigger() returns trigger
language plpgsql security definer set search_path = public as $$
begin
    insert into therapist_time_entry_audit (entry_id, action, actor, old_row, new_row)
    values (coalesce(new.entry_id, old.entry_id),
            case tg_op when 'INSERT' then 'create' when 'UPDATE' then 'update' else 'delete' end,
            coalesce(nullif(current_setting('rtm.actor', true), ''), session_user),
            case when tg_op <> 'INSERT' then to_jsonb(old) end,
            case when tg_op <> 'DELETE' then to_jsonb(new) end);
    return null;
end;
$$;
create trigger therapist_time_entries_audit after insert or update or delete on therapist_time_entries
    for each row execute function therapist_time_entry_audit_trigger();

-- ---------------------------------------------------------------- results ---------------------
-- The current answer for each (episode, kind, period/month). `answer` is what billing gets
-- (codes, units, modifiers, date of service); `explanation` is why. Hashes make recomputation
-- incremental in effect: an unchanged answer is not rewritten.
create table eligibility_results (
    result_key        text primary key,
    kind              text not null check (kind in ('setup', 'supply', 'management')),
    patient_id        text not null,
    episode_id        text not null,
    clinic_id         text not null,
    billing_practitioner_id text,
    policy_id         text not null,
    policy_version    text not null,
    period_index      integer,
    period_start      date not null,
    period_end        date not null,
    bill_month        date not null,
    codes             text[] not null default '{}',
    answer            jsonb not null,
    service_date      date,
    reached_on        date,
    status            text not null check (status in ('provisional', 'final', 'released', 'amended')),
    final_on          date not null,
    early_release     boolean not null default false,
    reason            text not null,
    data_days         integer,
    minutes           numeric(9, 2),
    explanation       jsonb not null,
    answer_hash       text not null,
    explanation_hash  text not null,
    revision          integer not null default 1,
    computed_at       timestamptz not null default now(),
    released_at       timestamptz,
    release_id        text
);
create index eligibility_results_clinic_month on eligibility_results (clinic_id, bill_month);
create index eligibility_results_patient on eligibility_results (patient_id);
create index eligibility_results_open on eligibility_results (final_on) where status = 'provisional';

-- What was handed to billing, frozen: the answer and explanation as released.
create table eligibility_releases (
    release_id  text not null,
    result_key  text not null references eligibility_results,
    revision    integer not null,
    clinic_id   text not null,
    bill_month  date not null,
    answer      jsonb not null,
    explanation jsonb not null,
    released_at timestamptz not null default now(),
    released_by text,
    primary key (release_id, result_key)
);
create index eligibility_releases_result on eligibility_releases (result_key, released_at);

-- A released result whose answer or explanation changed: old and new, and why. Never silent.
create table eligibility_amendments (
    amendment_id   bigserial primary key,
    result_key     text not null references eligibility_results,
    patient_id     text not null,
    clinic_id      text not null,
    release_id     text not null,
    old_answer     jsonb not null,
    new_answer     jsonb not null,
    changes_claim  boolean not null,
    reason         text not null,
    old_explanation jsonb not null,
    new_explanation jsonb not null,
    created_at     timestamptz not null default now(),
    released_in    text
);
create index eligibility_amendments_result on eligibility_amendments (result_key, amendment_id);
create index eligibility_amendments_clinic on eligibility_amendments (clinic_id, created_at);

-- ---------------------------------------------------------------- privileges ------------------
grant select, insert, update, delete on eligibility_dirty_patients to {writer};
grant usage on sequence eligibility_mark_seq to {writer};
grant select, insert, update on rpm_billing_periods to {writer};
grant select, insert, update on therapist_timers to {writer};
grant select on therapist_time_entry_audit to {writer};
-- Delete only for results that no longer exist and were never released (the foreign keys from
-- releases and amendments keep released results from ever being deleted).
grant select, insert, update, delete on eligibility_results to {writer};
grant select, insert on eligibility_releases to {writer};
grant select, insert, update on eligibility_amendments to {writer};
grant usage on sequence eligibility_amendments_amendment_id_seq to {writer};
-- Billing reads summaries, releases and amendments; nothing else of this part.
grant select on eligibility_results, eligibility_releases, eligibility_amendments to {reader};
