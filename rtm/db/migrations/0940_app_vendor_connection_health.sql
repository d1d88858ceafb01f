-- The clinic app shows each vendor-cloud connection's health (patient page, review queue): a revoked
-- or silent connector is a problem the therapist must see. The app role gets no right on
-- vendor_connections itself (its token columns stay out of reach: selecting them is refused); it
-- reads this view, owned by the owner, of the health columns only, confined to the clinic set in
-- the transaction through the connection's device credential (security_barrier, as the views of
-- migration 0760). Without a clinic set it shows nothing.
create view app_vendor_connections with (security_barrier) as
    select v.vendor, d.patient_id, d.episode_id, d.device_id, d.clinic_id,
           d.revoked_at as enrolment_revoked_at,
           v.status, v.token_expires_at, v.synced_through, v.last_success_at, v.last_error_at, v.last_error,
           v.created_at, v.updated_at
      from vendor_connections v
      join ingest_device_credentials d on d.credential_id = v.credential_id
     where d.clinic_id = app_clinic();
grant select on app_vendor_connections to {app};
