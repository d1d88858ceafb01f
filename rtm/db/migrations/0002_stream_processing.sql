-- What the stream processors need beyond the archive: a queue of IMU recordings waiting to be
-- analysed, the outcome of each analysis, and the right to replace derived rows.

-- A recording (device + stream) whose batches changed. Written in the same transaction as the
-- batches themselves, so a stored batch is always either analysed or queued. A worker claims
-- rows with FOR UPDATE SKIP LOCKED once the recording has been quiet for a moment, and deletes
-- a row only if no newer batch arrived meanwhile (mark_seq).
create sequence imu_stream_mark_seq;
create table imu_stream_queue (
    device_id    text not null,
    stream_id    text not null,
    patient_id   text not null,
    first_time   timestamptz not null,
    last_arrival timestamptz not null default clock_timestamp(),
    mark_seq     bigint not null default nextval('imu_stream_mark_seq'),
    primary key (device_id, stream_id)
);
create index imu_stream_queue_arrival on imu_stream_queue (last_arrival);

-- The latest analysis of each recording: what was found, or why nothing could be.
create table stream_analyses (
    device_id         text not null,
    stream_id         text not null,
    patient_id        text not null,
    session_id        text,
    exercise          text,
    status            text not null check (status in ('analysed', 'no_session', 'rejected')),
    detail            text,
    first_time        timestamptz not null,
    last_time         timestamptz not null,
    samples           integer not null,
    batches           integer not null,
    sets              integer not null default 0,
    reps              integer not null default 0,
    algorithm_version text not null,
    analysed_at       timestamptz not null default now(),
    primary key (device_id, stream_id)
);
create index stream_analyses_patient on stream_analyses (patient_id, first_time);

-- Derived rows are recomputed from stored inputs and replaced wholesale for what changed.
grant select, insert, update, delete on imu_stream_queue, stream_analyses to {writer};
grant usage on sequence imu_stream_mark_seq to {writer};
grant delete on exercise_sets, rep_results, activity_minutes, data_day_facts to {writer};
grant select on imu_stream_queue, stream_analyses to {reader};
