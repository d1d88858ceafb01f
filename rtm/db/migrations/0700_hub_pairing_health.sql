-- Home hubs: pairing by a short code, and the health each hub reports.

-- A pairing code lets a hub fetch a device's credential without anybody typing the token. Only an
-- HMAC digest of the code is stored (keyed by the gateway's pepper). A code is single use and
-- short-lived; redeeming it gives the device's live credential a new secret (the token shown at
-- enrolment stops working), so only the hub that redeemed it holds a working token.
create table ingest_pairing_codes (
    code_hash   bytea primary key,
    device_id   text not null references devices,
    clinic      text not null references clinics,
    created_at  timestamptz not null default now(),
    created_by  text,
    expires_at  timestamptz not null,
    redeemed_at timestamptz
);
create index ingest_pairing_codes_device on ingest_pairing_codes (device_id);

-- Issuing a new code for a device voids its earlier unredeemed ones (expires_at set to now).
grant select, insert on ingest_pairing_codes to {writer};
grant update (expires_at) on ingest_pairing_codes to {writer};

-- The writer cannot change credentials (0411); redeeming goes through this function, which can
-- only consume an unexpired, unused code and give the live credential of that code's device (in
-- that code's clinic) a new secret digest. It returns that credential, or nothing.
create function ingest_redeem_pairing_code(p_code_hash bytea, p_secret_hash bytea, p_at timestamptz)
    returns table (credential_id text, device_id text, patient_id text, episode_id text, body_site text)
    language plpgsql security definer set search_path = public, pg_temp as $$
declare
    v_device text;
    v_clinic text;
begin
    update ingest_pairing_codes c set redeemed_at = p_at
     where c.code_hash = p_code_hash and c.redeemed_at is null and c.expires_at > p_at
    returning c.device_id, c.clinic into v_device, v_clinic;
    if v_device is null then
        return;
    end if;
    return query
        update ingest_device_credentials d set secret_hash = p_secret_hash
         where d.device_id = v_device and d.clinic_id = v_clinic and d.revoked_at is null
        returning d.credential_id, d.device_id, d.patient_id, d.episode_id, d.body_site;
end
$$;
revoke all on function ingest_redeem_pairing_code(bytea, bytea, timestamptz) from public;
grant execute on function ingest_redeem_pairing_code(bytea, bytea, timestamptz) to {writer};

-- The latest health report of each hub-connected device, sent by the hub with that device's
-- credential: the hub's own state (spool, evictions, agent version) and the device's (battery,
-- last upload). One row per device, overwritten: operators ask "which hubs are in trouble now".
create table hub_health (
    device_id      text primary key references devices,
    credential_id  text not null references ingest_device_credentials,
    patient_id     text not null references patients,
    clinic_id      text not null references clinics,
    hub_id         text not null,
    agent_version  text not null,
    reported_at    timestamptz not null,
    received_at    timestamptz not null default now(),
    battery_pct    smallint,
    connected      boolean not null,
    last_sync      timestamptz,
    spool_depth    bigint not null,
    spool_bytes    bigint not null,
    evictions      bigint not null,
    rejected       bigint not null,
    bad_frames     bigint not null,
    clock_resets   bigint not null
);
create index hub_health_clinic on hub_health (clinic_id);

grant select, insert, update on hub_health to {writer};
grant select on hub_health, ingest_pairing_codes to {reader};
