"""The simulated clinic's care context: patients, episodes, devices, assignments, prescriptions,
and the therapist's treatment-management time (entered as a therapist would, through the
time-entry API)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import numpy as np
import psycopg

from eligibility.timeentries import NewTimeEntry, add_entry
from rtm.contract import TimeActivity, TimeChannel
from simulation.cohort import CLINIC_ID, DEVICE_MODEL, THERAPIST_ID, Cohort


def seed_care_context(conn: psycopg.Connection[Any], cohort: Cohort) -> None:
    """Idempotent: re-running with the same cohort changes nothing."""
    start = datetime.combine(cohort.start, time(0), tzinfo=UTC) - timedelta(days=1)
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
            conn.execute("insert into patients (patient_id, clinic_id) values (%s, %s) on conflict do nothing",
                         (p.patient_id, CLINIC_ID))
            conn.execute(
                """insert into episodes (episode_id, patient_id, clinic_id, discipline, billing_practitioner_id,
                                         start_date, setup_date, setup_documented_at, consent_at, plan_of_care_start)
                   values (%s, %s, %s, 'PT', %s, %s, %s, %s, %s, %s) on conflict do nothing""",
                (p.episode_id, p.patient_id, CLINIC_ID, THERAPIST_ID, cohort.start, cohort.start, start, start,
                 cohort.start),
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
            conn.execute(
                """insert into exercise_prescriptions (episode_id, exercise, effective_from, sessions_per_week,
                                                      sets, reps, prescribed_by)
                   values (%s, %s, %s, 5, %s, %s, %s) on conflict do nothing""",
                (p.episode_id, p.exercise, cohort.start, cohort.prescribed_sets, cohort.prescribed_reps,
                 THERAPIST_ID),
            )
    _therapist_time(conn, cohort)


def _therapist_time(conn: psycopg.Connection[Any], cohort: Cohort) -> None:
    """A few data reviews a week, and for most patients a video check-in each month."""
    rng = np.random.default_rng([cohort.seed, 99])
    for p in cohort.patients:
        for day in range(2, cohort.days, 4):
            at = datetime.combine(cohort.start + timedelta(days=day), time(14), tzinfo=UTC)
            interactive = day % 28 == 10 and rng.random() < 0.85
            add_entry(conn, NewTimeEntry(
                patient_id=p.patient_id, episode_id=p.episode_id, practitioner_id=THERAPIST_ID,
                activity=TimeActivity.INTERACTIVE_COMMUNICATION if interactive else TimeActivity.DATA_REVIEW,
                channel=TimeChannel.VIDEO if interactive else TimeChannel.NONE, started_at=at,
                minutes=float(rng.integers(3, 9)), entry_id=f"te-{p.patient_id}-{day}",
            ), actor="simulated-therapist")
