-- Ownership of what devices write (architecture rule 10): a recording, a session and a source
-- record belong to the device and patient that first wrote them; the sink refuses (and
-- dead-letters) anything else that touches them.

-- A recording (device, stream) is its first batch's patient's. imu_batches is a hypertable keyed
-- by (event_id, time), so the owner is kept here, one row per recording.
create table imu_recordings (
    device_id  text not null,
    stream_id  text not null,
    patient_id text not null,
    first_seen timestamptz not null default now(),
    primary key (device_id, stream_id)
);
insert into imu_recordings (device_id, stream_id, patient_id)
select device_id, stream_id, min(patient_id) from imu_batches group by device_id, stream_id;

-- A source record (Health Connect, HealthKit, vendor: one event id per record) and the version of
-- it in force. activity_intervals is keyed by (event_id, time): an edit that moves the start is a
-- second row, so the version in force is named here and every other row of the record is withdrawn.
create table activity_records (
    event_id   uuid primary key,
    patient_id text not null,
    device_id  text not null,
    time       timestamptz not null,  -- start of the version in force
    end_time   timestamptz not null
);
insert into activity_records (event_id, patient_id, device_id, time, end_time)
select distinct on (event_id) event_id, patient_id, device_id, time, end_time
from activity_intervals order by event_id, deleted, received_at desc, time desc;
update activity_intervals a set deleted = true
from activity_records r where a.event_id = r.event_id and a.time <> r.time and not a.deleted;

grant select, insert, update on imu_recordings, activity_records to {writer};
grant select on imu_recordings, activity_records to {reader};
