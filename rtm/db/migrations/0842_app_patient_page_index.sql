-- The patient page lists a patient's devices (device_assignments by patient_id, with each one's last
-- day of data); the table had an index by episode only, so each page view scanned every assignment.
create index if not exists device_assignments_patient on device_assignments (patient_id, valid_from desc);
