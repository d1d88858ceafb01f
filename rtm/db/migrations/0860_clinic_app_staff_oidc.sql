-- The clinic app's staff management and optional OpenID Connect sign-in.
--
-- A staff account may be bound to one identity at the clinic's identity provider (issuer and
-- subject, the ID token's `iss` and `sub`, which OpenID Connect Core 1.0 section 2 makes unique
-- and stable together). The binding is made on the first OIDC sign-in of an existing account
-- matched by its e-mail address, or by the admin; accounts are not created by a sign-in unless the
-- app is configured to.
alter table app_staff add column oidc_issuer text;
alter table app_staff add column oidc_subject text;
alter table app_staff add constraint app_staff_oidc_identity unique (oidc_issuer, oidc_subject);
alter table app_staff add check ((oidc_issuer is null) = (oidc_subject is null));

-- A sign-in started at the identity provider and not yet come back: the state (its SHA-256 only),
-- the nonce the ID token must carry and the PKCE code verifier (RFC 7636). Single use: `used_at`.
create table app_oidc_logins (
    state_hash    bytea primary key,
    nonce         text not null,
    code_verifier text not null,
    created_at    timestamptz not null default now(),
    expires_at    timestamptz not null,
    used_at       timestamptz
);
grant select, insert, update on app_oidc_logins to {app};

-- A role change of a staff member who is also a practitioner (therapist <-> assistant).
grant update (role) on practitioners to {app};
