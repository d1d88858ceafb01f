-- The ingest gateway's own tables: who may write (clinic API keys, device credentials), which
-- events the broker has already acknowledged (the dedup record) and links to vendor clouds.
-- Secrets are never stored: only HMAC-SHA256 digests of high-entropy random tokens.

create table ingest_clinic_keys (
    key_id      text primary key,
    clinic_id   text not null references clinics,
    secret_hash bytea not null,
    label       text,
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz
);
create index ingest_clinic_keys_clinic on ingest_clinic_keys (clinic_id);

-- One credential per enrolment of a device to a patient's episode. A device holds at most one
-- live credential: re-enrolling it elsewhere means revoking the old one first.
create table ingest_device_credentials (
    credential_id  text primary key,
    device_id      text not null references devices,
    patient_id     text not null references patients,
    episode_id     text not null references episodes,
    clinic_id      text not null references clinics,
    body_site      text not null default 'unknown',
    valid_from     timestamptz not null,
    secret_hash    bytea not null,
    created_at     timestamptz not null default now(),
    created_by     text,
    revoked_at     timestamptz,
    revoked_reason text
);
create unique index ingest_device_credentials_live on ingest_device_credentials (device_id)
    where revoked_at is null;
create index ingest_device_credentials_episode on ingest_device_credentials (episode_id);

-- Events the broker acknowledged (acks=all), written only after the acknowledgement. `digest`
-- is a hash of the canonical encoding: the same id with another digest is a revision (an edited
-- Health Connect record, a HealthKit deletion) and is published again. The interval bounds let
-- a deletion that names only a record id (HealthKit's HKDeletedObject) be resolved.
create table ingest_accepted_events (
    event_id    uuid primary key,
    digest      bytea not null,
    kind        text not null,
    start_time  timestamptz,
    end_time    timestamptz,
    accepted_at timestamptz not null default now()
);
create index ingest_accepted_events_accepted_at on ingest_accepted_events (accepted_at);

-- A vendor-cloud account (e.g. a Polar AccessLink user) linked to an enrolled device credential.
-- `tz` interprets the vendor's local wall-clock sample times. The access token is the vendor's
-- OAuth bearer token for that user (production: encrypt at rest or keep in a secrets manager).
create table ingest_vendor_links (
    vendor         text not null,
    vendor_user_id text not null,
    credential_id  text not null references ingest_device_credentials,
    tz             text not null,
    access_token   text not null,
    created_at     timestamptz not null default now(),
    primary key (vendor, vendor_user_id)
);

grant select, insert, update on ingest_clinic_keys, ingest_device_credentials, ingest_accepted_events,
    ingest_vendor_links to {writer};
