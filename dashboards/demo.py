"""A demo clinic for the app, the browser tests and `rtm bench dashboards`: staff accounts, and
patients with device data (data days, exercise sets with ROM, steps) that the real flag evaluator
and eligibility engine turn into flags and billing results. Data is written with COPY in bulk."""

from __future__ import annotations

import io
import secrets
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import psycopg

from dashboards.auth import NewStaff, create_staff, npi_with_check_digit
from eligibility.store import recompute_patients
from flags.store import evaluate_patients
from rtm.db import connect
from rtm.settings import Settings

DEMO_MODEL = "demo-imu-6"
ROLES = ("admin", "therapist", "assistant", "biller")


@dataclass(frozen=True)
class DemoStaff:
    clinic_id: str
    password: str

    def email(self, role: str) -> str:
        return f"{role}@{self.clinic_id}.example"

    def staff_id(self, role: str) -> str:
        return f"{self.clinic_id}-{role}"


def demo_password(settings: Settings) -> str:
    """The local demo accounts' password: made once, kept with the local secrets (never in the code)."""
    path = settings.secrets_dir / "app_demo_password"
    if not path.exists():
        settings.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        from rtm.stack.postgres import write_secret

        write_secret(path, secrets.token_urlsafe(12))
    return path.read_text().strip()


def ensure_staff(settings: Settings, clinic_id: str, password: str, clinic_name: str | None = None,
                 therapist_id: str | None = None) -> DemoStaff:  # fmt: skip
    """An admin, a therapist (PT with an NPI), an assistant (PTA) and a biller for the clinic (idempotent).
    `therapist_id` names an existing practitioner to give the therapist account to."""
    demo = DemoStaff(clinic_id, password)
    with connect("writer", settings, autocommit=True) as w:
        w.execute("insert into clinics (clinic_id, name) values (%s, %s) on conflict do nothing",
                  (clinic_id, clinic_name or f"Clinic {clinic_id}"))
    with connect("app", settings, autocommit=True) as conn:
        for n, role in enumerate(ROLES):
            sid = therapist_id if role == "therapist" and therapist_id else demo.staff_id(role)
            if conn.execute("select 1 from app_staff where staff_id = %s", (sid,)).fetchone():
                continue
            create_staff(conn, NewStaff(
                staff_id=sid, clinic_id=clinic_id, email=demo.email(role),
                display_name=f"Demo {role.title()} ({clinic_id})", role=role,
                discipline="PT" if role in ("therapist", "assistant") else None,
                npi=npi_with_check_digit(f"1{zlib.crc32(f'{clinic_id}/{n}'.encode()) % 10**8:08d}") if role == "therapist" else None,
                password=password))  # fmt: skip
    return demo


def _copy(conn: psycopg.Connection[Any], table: str, columns: str, text: str) -> None:
    with conn.cursor().copy(f"copy {table} ({columns}) from stdin") as cp:
        cp.write(text.encode())


def seed_patients(settings: Settings, clinic_id: str, therapist_id: str, patients: int, days: int,
                  seed: int = 14, today: date | None = None) -> list[str]:  # fmt: skip
    """`patients` patients with `days` days of monitoring up to today; some stop sending data a week
    ago (no-data flags), ROM trends up, flat or down. Returns the patient ids."""
    today = today or datetime.now(UTC).date()
    start = today - timedelta(days=days - 1)
    rng = np.random.default_rng(seed)
    ids = [f"{clinic_id}-p{i:04d}" for i in range(patients)]
    day_idx = np.arange(days)
    facts, sets_lines = io.StringIO(), io.StringIO()
    for i, pid in enumerate(ids):
        adherence = rng.uniform(0.45, 0.95)
        done = rng.random(days) < adherence
        if i % 7 == 3:  # silent for the last 8 days
            done[-8:] = False
        steps = rng.integers(1500, 9000, days)
        dev = f"{pid}-dev"
        for d in np.flatnonzero(done).tolist():  # one row per day with data (vectorised draws above)
            facts.write(f"{start + timedelta(days=d)}\t{pid}\t{dev}\t{pid}-ep\tUTC\t{int(rng.integers(300, 900))}\t1\t"
                        f"{int(steps[d])}\tt\n")
        slope = rng.choice([0.15, 0.0, -0.12])  # degrees per day: improving, stalled, regressing
        rom = 60 + slope * day_idx + rng.normal(0, 3, days)
        reps = rng.integers(7, 12, days)
        for d in np.flatnonzero(done).tolist():
            at = datetime.combine(start + timedelta(days=d), time(15), tzinfo=UTC)
            set_id = uuid.uuid5(uuid.NAMESPACE_URL, f"demo-set/{pid}/{d}")
            sets_lines.write(f"{at.isoformat()}\t{set_id}\t{pid}\t{pid}-ep\t{dev}\ts\t"
                             f"knee_extension\t{(at + timedelta(minutes=3)).isoformat()}\t{int(reps[d])}\t"
                             f"{rom[d]:.1f}\t{rom[d] + 4:.1f}\tdemo\n")
    valid_from = datetime.combine(start, time(0), tzinfo=UTC) - timedelta(days=1)
    with connect("writer", settings) as w:
        with w.transaction():
            w.execute("""insert into device_models (model_id, vendor, name, qualifying_medical_device)
                         values (%s, 'demo', 'Demo 6-axis IMU', true) on conflict do nothing""", (DEMO_MODEL,))
            for n, pid in enumerate(ids):
                ep, dev = f"{pid}-ep", f"{pid}-dev"
                w.execute("insert into patients (patient_id, clinic_id, external_ref) values (%s, %s, %s)"
                          " on conflict do nothing", (pid, clinic_id, f"MRN{n + 1:05d}"))
                w.execute(
                    """insert into episodes (episode_id, patient_id, clinic_id, discipline, billing_practitioner_id,
                           start_date, setup_date, setup_documented_at, consent_at, plan_of_care_start,
                           diagnosis_codes) values (%s, %s, %s, 'PT', %s, %s, %s, %s, %s, %s, %s)
                       on conflict do nothing""",
                    (ep, pid, clinic_id, therapist_id, start, start, valid_from, valid_from, start,
                     ["M17.11", "Z96.651"]),
                )  # fmt: skip
                w.execute("insert into devices (device_id, model_id) values (%s, %s) on conflict do nothing",
                          (dev, DEMO_MODEL))
                w.execute("""insert into device_assignments (device_id, episode_id, patient_id, body_site, valid_from)
                             values (%s, %s, %s, 'shank', %s) on conflict do nothing""", (dev, ep, pid, valid_from))
                w.execute("""insert into patient_timezones (patient_id, effective_from, tz) values (%s, %s, 'UTC')
                             on conflict do nothing""", (pid, valid_from))
                w.execute("""insert into exercise_prescriptions (episode_id, exercise, effective_from, sessions_per_week,
                             sets, reps, target_rom_deg, prescribed_by) values (%s, 'knee_extension', %s, 5, 1, 10, 90, %s)
                             on conflict do nothing""", (ep, start, therapist_id))
            _copy(w, "data_day_facts", "local_date, patient_id, device_id, episode_id, tz, wear_minutes, exercise_sets,"
                  " steps, qualifying", facts.getvalue())
            _copy(w, "exercise_sets", "time, set_id, patient_id, episode_id, device_id, stream_id, exercise, end_time,"
                  " rep_count, rom_median_deg, rom_max_deg, algorithm_version", sets_lines.getvalue())
        w.autocommit = True
        evaluate_patients(w, ids, datetime.combine(today, time(12), tzinfo=UTC))
        recompute_patients(w, ids, today)
    return ids


def announce(settings: Settings, clinic_id: str, therapist_id: str) -> str:
    """Demo sign-ins for a clinic the main job seeded (its therapist gets the therapist account), and
    where the app answers once `rtm app serve` runs."""
    from dashboards.settings import get_app_settings

    a = get_app_settings()
    staff = ensure_staff(settings, clinic_id, demo_password(settings), therapist_id=therapist_id)
    return (f"\nclinic app: `rtm app serve`, then open http://{a.host}:{a.port}/ and sign in as\n"
            f"  {staff.email('therapist')} (therapist) or {staff.email('biller')} (biller), "
            f"password {staff.password}")
