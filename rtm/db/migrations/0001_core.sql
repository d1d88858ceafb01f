-- Core schema: the care context (plain tables) and the time series (hypertables).
-- Every table that receives stream data has a unique key that makes each write an idempotent
-- upsert: replaying a topic leaves these tables unchanged (architecture rule 1).
-- Uses only what the Apache edition of TimescaleDB offers (hypertables, time_bucket, drop_chunks).

-- ---------------------------------------------------------------- care context ----------------
create table clinics (
    clinic_id   text primary key,
    name        text not null,
    created_at  timestamptz not null default now()
);

create table practitioners (
    practitioner_id text primary key,
    clinic_id       text not null references clinics,
    role            text not null check (role in ('therapist', 'assistant', 'physician', 'npp', 'clinical_staff')),
    discipline      text check (discipline in ('PT', 'OT', 'SLP')),
    display_name    text not null,
    created_at      timestamptz not null default now()
);

-- No names or dates of birth here: the clinic's EMR holds identity; we hold an opaque reference.
create table patients (
    patient_id   text primary key,
    clinic_id    text not null references clinics,
    external_ref text,
    created_at   timestamptz not null default now()
);

create table episodes (
    episode_id              text primary key,
    patient_id              text not null references patients,
    clinic_id               text not null references clinics,
    payer_policy            text not null default 'medicare-2026',
    monitoring_category     text not null default 'musculoskeletal'
                            check (monitoring_category in ('musculoskeletal', 'respiratory', 'cbt')),
    discipline              text not null check (discipline in ('PT', 'OT', 'SLP')),
    billing_practitioner_id text references practitioners,
    start_date              date not null,
    setup_date              date,
    setup_documented_at     timestamptz,
    consent_at              timestamptz,
    plan_of_care_start      date,
    plan_of_care_end        date,
    discharge_date          date,
    created_at              timestamptz not null default now(),
    updated_at              timestamptz not null default now(),
    check (discharge_date is null or discharge_date >= start_date)
);
create index episodes_patient on episodes (patient_id);

create table device_models (
    model_id                  text primary key,
    vendor                    text not null,
    name                      text not null,
    qualifying_medical_device boolean not null default false
);

create table devices (
    device_id  text primary key,
    model_id   text not null references device_models,
    serial     text,
    firmware   text,
    created_at timestamptz not null default now()
);

create table device_assignments (
    device_id   text not null references devices,
    episode_id  text not null references episodes,
    patient_id  text not null references patients,
    body_site   text not null default 'unknown',
    valid_from  timestamptz not null,
    valid_to    timestamptz,
    event_id    uuid,
    primary key (device_id, valid_from),
    check (valid_to is null or valid_to > valid_from)
);
create index device_assignments_episode on device_assignments (episode_id);

create table patient_timezones (
    patient_id     text not null references patients,
    effective_from timestamptz not null,
    tz             text not null,
    event_id       uuid,
    primary key (patient_id, effective_from)
);

create table therapist_time_entries (
    entry_id          text primary key,
    event_id          uuid not null unique,
    patient_id        text not null references patients,
    episode_id        text not null references episodes,
    practitioner_id   text not null references practitioners,
    practitioner_role text not null,
    discipline        text,
    activity          text not null,
    channel           text not null,
    started_at        timestamptz not null,
    minutes           numeric(7, 2) not null check (minutes > 0),
    service_date      date,
    supersedes        text references therapist_time_entries,
    recorded_at       timestamptz not null default now()
);
create index therapist_time_entries_patient on therapist_time_entries (patient_id, started_at);

-- ---------------------------------------------------------------- time series -----------------
-- Raw IMU batches as received (the canonical binary frame): an archive that lets history be
-- reprocessed with a newer algorithm.
create table imu_batches (
    time           timestamptz not null,           -- first sample
    event_id       uuid not null,
    patient_id     text not null,
    episode_id     text,
    device_id      text not null,
    stream_id      text not null,
    body_site      text not null,
    sample_rate_hz double precision not null,
    n_samples      integer not null,
    duration_s     double precision not null,
    schema_version smallint not null,
    frame          bytea not null,
    provenance     jsonb not null,
    received_at    timestamptz not null default now(),
    primary key (event_id, time)
);
select create_hypertable('imu_batches', by_range('time', interval '1 day'));
create index imu_batches_patient on imu_batches (patient_id, time desc);
create index imu_batches_stream on imu_batches (device_id, stream_id, time);

-- Step / activity intervals at the source's own granularity (withdrawn ones kept, flagged).
create table activity_intervals (
    time             timestamptz not null,         -- interval start
    end_time         timestamptz not null,
    event_id         uuid not null,
    patient_id       text not null,
    episode_id       text,
    device_id        text not null,
    source           text not null,
    source_record_id text,
    steps            integer not null,
    active_minutes   double precision,
    zone_offset_s    integer,
    deleted          boolean not null default false,
    provenance       jsonb not null,
    received_at      timestamptz not null default now(),
    primary key (event_id, time)
);
select create_hypertable('activity_intervals', by_range('time', interval '7 days'));
create index activity_intervals_patient on activity_intervals (patient_id, time desc);

-- Per-minute activity derived from raw accelerometry or apportioned intervals.
-- worn = null means unknown; a worn minute with zero steps is a zero, not missing data.
create table activity_minutes (
    time       timestamptz not null,
    patient_id text not null,
    device_id  text not null,
    steps      integer not null default 0,
    active     boolean not null default false,
    worn       boolean,
    method     text not null,
    primary key (patient_id, device_id, time)
);
select create_hypertable('activity_minutes', by_range('time', interval '7 days'));

-- One row per home-exercise session, filled from its start and end markers in whichever order
-- they arrive (either may be missing for a while).
create table exercise_sessions (
    session_id      text primary key,
    patient_id      text not null,
    episode_id      text,
    device_id       text not null,
    exercise        text not null,
    body_site       text not null,
    started_at      timestamptz,
    ended_at        timestamptz,
    prescribed_sets integer,
    prescribed_reps integer,
    check (started_at is not null or ended_at is not null)
);
create index exercise_sessions_device on exercise_sessions (patient_id, device_id, started_at);

-- One exercise set found in a recording, and each repetition in it.
create table exercise_sets (
    time              timestamptz not null,        -- first rep start
    set_id            uuid not null,               -- derived from (device, stream, start)
    patient_id        text not null,
    episode_id        text,
    device_id         text not null,
    stream_id         text not null,
    session_id        text,
    exercise          text,
    end_time          timestamptz not null,
    rep_count         integer not null,
    partial_reps      integer not null default 0,
    pauses            integer not null default 0,
    reps_per_min      double precision,
    rom_median_deg    double precision,
    rom_max_deg       double precision,
    algorithm_version text not null,
    computed_at       timestamptz not null default now(),
    primary key (set_id, time)
);
select create_hypertable('exercise_sets', by_range('time', interval '30 days'));
create index exercise_sets_patient on exercise_sets (patient_id, time desc);

create table rep_results (
    time       timestamptz not null,               -- rep start
    set_id     uuid not null,
    rep_index  integer not null,
    patient_id text not null,
    end_time   timestamptz not null,
    rom_deg    double precision,
    partial    boolean not null default false,
    paused     boolean not null default false,
    primary key (set_id, rep_index, time)
);
select create_hypertable('rep_results', by_range('time', interval '30 days'));

-- One row per patient, patient-local calendar date and device: whether that device produced
-- qualifying data that day, and what. The eligibility engine counts distinct dates from here.
create table data_day_facts (
    local_date    date not null,
    patient_id    text not null,
    device_id     text not null,
    episode_id    text,
    tz            text not null,
    wear_minutes  integer not null default 0,
    exercise_sets integer not null default 0,
    steps         integer not null default 0,
    qualifying    boolean not null,
    record_refs   jsonb not null default '[]',
    updated_at    timestamptz not null default now(),
    primary key (patient_id, local_date, device_id)
);
select create_hypertable('data_day_facts', by_range('local_date', interval '30 days'));

-- ---------------------------------------------------------------- privileges ------------------
-- The writer (processors, gateway) may read and upsert; only the owner may delete or alter.
grant select, insert, update on all tables in schema public to {writer};
grant select on all tables in schema public to {reader};
