-- Trend flags for therapists: the exercise prescription per episode (the plan that adherence and
-- dose are measured against), the flags themselves, and an audit of every state change.
-- Least privilege: the writer (processors, review API) reads inputs and upserts flags but never
-- deletes them or writes the audit; the reader (dashboards) only selects.

-- ---------------------------------------------------------------- prescription ----------------
-- The plan for one exercise of an episode, from `effective_from` (patient-local date) until a later
-- row for the same exercise. sessions_per_week = 0 discontinues the exercise.
create table exercise_prescriptions (
    episode_id        text not null references episodes,
    exercise          text not null,
    effective_from    date not null,
    sessions_per_week smallint not null check (sessions_per_week between 0 and 21),
    sets              smallint check (sets between 1 and 20),
    reps              smallint check (reps between 1 and 200),
    target_rom_deg    double precision check (target_rom_deg > 0 and target_rom_deg <= 360),
    prescribed_by     text,
    recorded_at       timestamptz not null default now(),
    primary key (episode_id, exercise, effective_from)
);

-- ---------------------------------------------------------------- flags -----------------------
-- One row per occurrence of a condition. `open` and `acknowledged` are live: at most one live
-- flag per patient and kind (the partial unique index), re-evaluation updates it in place.
-- Timestamps raised_at/updated_at/resolved_at are the evaluation's as_of (deterministic);
-- acknowledged_at and manual resolutions are when the person acted.
create table therapist_flags (
    flag_id               bigint generated always as identity primary key,
    patient_id            text not null references patients,
    clinic_id             text not null references clinics,
    episode_id            text references episodes,
    kind                  text not null check (kind in
                          ('adherence_falling', 'no_data', 'reps_below_dose', 'rom_trend', 'rom_drop')),
    severity              text not null check (severity in ('low', 'medium', 'high')),
    state                 text not null default 'open' check (state in ('open', 'acknowledged', 'resolved')),
    evidence              jsonb not null,
    raised_at             timestamptz not null,
    updated_at            timestamptz not null,
    acknowledged_at       timestamptz,
    acknowledged_by       text,
    acknowledged_severity text check (acknowledged_severity in ('low', 'medium', 'high')),
    resolved_at           timestamptz,
    resolved_by           text,                      -- null: resolved by re-evaluation
    resolution            text check (resolution in ('cleared', 'manual', 'not_monitored')),
    resolution_evidence   jsonb,
    resolved_severity     text check (resolved_severity in ('low', 'medium', 'high')),
    condition_cleared_at  timestamptz,               -- after a manual resolution: the condition went away
    check ((state = 'resolved') = (resolved_at is not null)),
    check (state <> 'acknowledged' or acknowledged_at is not null)
);
create unique index therapist_flags_live on therapist_flags (patient_id, kind) where state <> 'resolved';
create index therapist_flags_queue on therapist_flags (clinic_id, raised_at) where state <> 'resolved';
create index therapist_flags_history on therapist_flags (patient_id, kind, flag_id desc);

-- Every state or severity change, whoever made it (the evaluator, a therapist through the review
-- API): who acknowledged and when. Evidence-only updates are not state changes and are not logged.
create table therapist_flag_audit (
    audit_id   bigint generated always as identity primary key,
    flag_id    bigint not null references therapist_flags,
    at         timestamptz not null default now(),
    actor      text not null,
    action     text not null check (action in ('raised', 'acknowledged', 'reopened', 'resolved', 'severity')),
    from_state text,
    to_state   text not null,
    severity   text not null,
    note       text
);
create index therapist_flag_audit_flag on therapist_flag_audit (flag_id, audit_id);

-- Security definer: the writer cannot write or alter the audit itself, only through this trigger.
-- The actor is the transaction's `rtm.actor` setting (set by the API) or the session user.
create function therapist_flag_audit_trigger() returns trigger
language plpgsql security definer set search_path = public as $$
declare
    v_action text;
begin
    if tg_op = 'INSERT' then
        v_action := 'raised';
    elsif new.state is distinct from old.state then
        v_action := case when old.state = 'resolved' then 'reopened'
                         when new.state = 'acknowledged' then 'acknowledged'
                         when new.state = 'resolved' then 'resolved'
                         else 'reopened' end;  -- acknowledged -> open: a re-alert
    elsif new.severity is distinct from old.severity then
        v_action := 'severity';
    else
        return null;
    end if;
    insert into therapist_flag_audit (flag_id, actor, action, from_state, to_state, severity, note)
    values (new.flag_id,
            coalesce(nullif(current_setting('rtm.actor', true), ''), session_user),
            v_action,
            case when tg_op = 'UPDATE' then old.state end,
            new.state, new.severity,
            nullif(current_setting('rtm.note', true), ''));
    return null;
end;
$$;
create trigger therapist_flags_audit after insert or update on therapist_flags
    for each row execute function therapist_flag_audit_trigger();

-- ---------------------------------------------------------------- privileges ------------------
grant select, insert, update on exercise_prescriptions to {writer};
grant select, insert, update on therapist_flags to {writer};
grant select on therapist_flag_audit to {writer};
grant select on exercise_prescriptions, therapist_flags, therapist_flag_audit to {reader};
