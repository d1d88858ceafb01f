-- Least privilege for credentials: the writer role (processors and the gateway) can no longer
-- change credential rows. Before, it could UPDATE ingest_clinic_keys and ingest_device_credentials,
-- i.e. un-revoke a key or a device, or swap a secret digest.
--
-- What still writes there, and how:
-- - clinic API keys are created and revoked by an operator (`rtm clinic-key ...`, as the owner role);
-- - enrolling a device inserts its credential (the writer keeps INSERT; a second live credential
--   for one device is refused by the unique index ingest_device_credentials_live);
-- - revoking a device goes through ingest_revoke_device_credential below, which can only set
--   revoked_at on a live credential, never clear it.
revoke insert, update, delete, truncate on ingest_clinic_keys from {writer};
revoke update, delete, truncate on ingest_device_credentials from {writer};

create function ingest_revoke_device_credential(p_credential_id text, p_reason text, p_at timestamptz)
    returns boolean
    language sql security definer set search_path = public, pg_temp as $$
    with done as (
        update ingest_device_credentials set revoked_at = p_at, revoked_reason = p_reason
         where credential_id = p_credential_id and revoked_at is null
        returning 1)
    select exists (select 1 from done)
$$;
revoke all on function ingest_revoke_device_credential(text, text, timestamptz) from public;
grant execute on function ingest_revoke_device_credential(text, text, timestamptz) to {writer};
