-- Vendor-cloud connections (device_adapters/cloud): one per patient device and vendor account,
-- with the OAuth token encrypted at rest (AES-GCM; `token_key_id` names the key, so keys rotate),
-- the sync health a clinic sees, and where the last successful sync got to (backfill asks only
-- for what is after it). Replaces the plain-text token of ingest_vendor_links.
create table vendor_connections (
    vendor            text not null,
    vendor_user_id    text not null,
    credential_id     text not null references ingest_device_credentials,
    tz                text not null,
    status            text not null default 'active'
                      check (status in ('active', 'reauthorization_required', 'revoked', 'disconnected')),
    token_key_id      text not null,
    token_ciphertext  bytea not null,   -- 12-byte nonce || AES-GCM ciphertext of the token JSON
    token_expires_at  timestamptz,      -- access token; null: the vendor gives no expiry
    synced_through    date,             -- last patient-local day synced completely (not today)
    last_success_at   timestamptz,
    last_error_at     timestamptz,
    last_error        text,
    not_before        timestamptz,      -- the vendor asked us to wait (429) until then
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    primary key (vendor, vendor_user_id)
);
create index vendor_connections_credential on vendor_connections (credential_id);

-- Authorization-code flows in progress: the state is single-use and expires; the PKCE verifier is
-- encrypted like a token.
create table vendor_oauth_states (
    state          text primary key,
    vendor         text not null,
    credential_id  text not null references ingest_device_credentials,
    tz             text not null,
    key_id         text not null,
    verifier_ct    bytea not null,
    created_at     timestamptz not null default now(),
    used_at        timestamptz
);

-- Webhook notifications: the dedup record (replay protection within the timestamp window) and the
-- queue the gateway's vendor syncer works through after answering the vendor.
create table vendor_notifications (
    vendor           text not null,
    notification_id  text not null,
    vendor_user_id   text,
    received_at      timestamptz not null default now(),
    payload          jsonb not null,
    status           text not null default 'pending' check (status in ('pending', 'done', 'failed')),
    attempts         integer not null default 0,
    next_attempt_at  timestamptz not null default now(),
    last_error       text,
    primary key (vendor, notification_id)
);
create index vendor_notifications_due on vendor_notifications (next_attempt_at) where status = 'pending';

grant select, insert, update on vendor_connections, vendor_oauth_states, vendor_notifications to {writer};
grant select on vendor_connections to {reader};
