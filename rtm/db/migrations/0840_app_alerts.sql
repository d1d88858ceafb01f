-- Alerts for new high-severity flags (dashboards/alerts.py): a clinic admin configures an outbound
-- webhook (signed as Standard Webhooks do) and/or an e-mail digest; a dispatcher running as the
-- writer role (it serves every clinic) records each delivery before sending it, and each flag in
-- at most one delivery per channel, so nothing is sent twice; failed sends are retried with
-- exponential back-off.

create table app_alert_settings (
    clinic_id      text primary key references clinics,
    webhook_url    text check (webhook_url ~ '^https?://'),
    -- 'whsec_' + base64 of 32 random bytes; the receiver needs it to verify the signature.
    webhook_secret text check (webhook_secret ~ '^whsec_[A-Za-z0-9+/=]{40,}$'),
    email_to       text[] not null default '{}',
    enabled_since  timestamptz not null default now(),
    -- The clinic's flags that existed when alerts were switched on are not sent (no flood of
    -- history): only flags with a higher id (identity: later rows). Not raised_at, which the
    -- evaluator may stamp with a data day's time.
    after_flag_id  bigint not null default 0,
    updated_at     timestamptz not null default now(),
    updated_by     text,
    check (webhook_url is null or webhook_secret is not null)
);

-- One message, as sent: the webhook body or the e-mail's text, its id (webhook-id / Message-ID,
-- the receiver's de-duplication key) and its fate.
create table app_alert_deliveries (
    delivery_id     text primary key,
    clinic_id       text not null references clinics,
    channel         text not null check (channel in ('webhook', 'email')),
    target          text not null,                 -- the URL or the addresses when it was planned
    flag_ids        bigint[] not null check (cardinality(flag_ids) > 0),
    payload         text not null,
    state           text not null default 'pending' check (state in ('pending', 'sent', 'failed')),
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error      text,
    created_at      timestamptz not null default now(),
    sent_at         timestamptz,
    check ((state = 'sent') = (sent_at is not null))
);
create index app_alert_deliveries_due on app_alert_deliveries (next_attempt_at) where state = 'pending';
create index app_alert_deliveries_clinic on app_alert_deliveries (clinic_id, created_at desc);

-- A flag belongs to one delivery per channel: the primary key is the never-twice guarantee.
create table app_alert_flags (
    flag_id     bigint not null references therapist_flags,
    channel     text not null check (channel in ('webhook', 'email')),
    delivery_id text not null references app_alert_deliveries,
    primary key (flag_id, channel)
);

-- The admin's page: its clinic's settings and deliveries only.
alter table app_alert_settings enable row level security;
create policy by_clinic on app_alert_settings to {app}
    using (clinic_id = app_clinic()) with check (clinic_id = app_clinic());
alter table app_alert_deliveries enable row level security;
create policy by_clinic on app_alert_deliveries to {app} using (clinic_id = app_clinic());
grant select, insert, update on app_alert_settings to {app};
grant select on app_alert_deliveries to {app};

-- The dispatcher.
grant select on app_alert_settings, therapist_flags, patients to {writer};
grant select, insert, update on app_alert_deliveries, app_alert_flags to {writer};
