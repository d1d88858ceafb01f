"""The simulated clinic's care context: patients, episodes, devices and their assignments."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import psycopg

from device_adapters.simulated.cohort import CLINIC_ID, DEVICE_MODEL, THERAPIST_ID, Cohort


def seed_care_context(conn: psycopg.Connection, cohort: Cohort) -> None:
    """Idempotent: re-running with the same cohort changes nothing."""
    with conn.transaction():
        conn.execute("insert into clinics (clinic_id, name) values (%s, %s) on conflict do nothing",
                     (CLINIC_ID, "Demo Physical Therapy"))
        conn.execute(
            """insert into practitioners (practitioner_id, clinic_id, role, discipline, display_name)
               values (%s, %s, 'therapist', 'PT', 'Demo Therapist') on conflict do nothing""",
            (THERAPIST_ID, CLINIC_ID),
        )
        conn.execute(
            """insert into device_models (model_id, vendor, name, qualifying_medical_device)
               values (%s, 'simulated', 'Simulated 6-axis IMU', true) on conflict do nothing""",
            (DEVICE_MODEL,),
        )
        for p in cohort.patients:
            start = datetime.combine(cohort.start, time(0), tzinfo=UTC) - timedelta(days=1)
            conn.execute("insert into patients (patient_id, clinic_id) values (%s, %s) on conflict do nothing",
                         (p.patient_id, CLINIC_ID))
            conn.execute(
                """insert into episodes (episode_id, patient_id, clinic_id, discipline, billing_practitioner_id,
                                         start_date, setup_date, setup_documented_at, consent_at, plan_of_care_start)
                   values (%s, %s, %s, 'PT', %s, %s, %s, %s, %s, %s) on conflict do nothing""",
                (p.episode_id, p.patient_id, CLINIC_ID, THERAPIST_ID, cohort.start, cohort.start, start, start, cohort.start),
            )
            conn.execute("insert into devices (device_id, model_id) values (%s, %s) on conflict do nothing",
                         (p.device_id, DEVICE_MODEL))
            conn.execute(
                """insert into device_assignments (device_id, episode_id, patient_id, body_site, valid_from)
                   values (%s, %s, %s, %s, %s) on conflict do nothing""",
                (p.device_id, p.episode_id, p.patient_id, p.body_site, start),
            )
            conn.execute(
                """insert into patient_timezones (patient_id, effective_from, tz) values (%s, %s, %s)
                   on conflict do nothing""",
                (p.patient_id, start, p.tz),
            )
