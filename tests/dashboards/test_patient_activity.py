"""The patient page's active minutes: the last week's minutes the step processor marked active,
counted in the database through the app's clinic-scoped view (older, inactive and other patients'
minutes left out); against the real database and app."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.dashboards.conftest import Clinics
from tests.dashboards.test_vendor_connections import _sign_in

pytestmark = pytest.mark.integration


def test_active_minutes_of_the_last_week_on_the_patient_page(clinics: Clinics, app_url: str) -> None:
    patient, other = clinics.a_patients[-1], clinics.b_patients[-1]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    rows = (
        [(now - timedelta(days=2, minutes=m), patient, True) for m in range(30)]  # counted
        + [(now - timedelta(days=9, minutes=m), patient, True) for m in range(10)]  # older than a week
        + [(now - timedelta(days=1, minutes=m), patient, False) for m in range(5)]  # not active
        + [(now - timedelta(days=1, minutes=m), other, True) for m in range(50)]  # another clinic's patient
    )
    with psycopg.connect(clinics.settings.dsn("owner"), autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            """insert into activity_minutes (time, patient_id, device_id, steps, active, method)
               values (%s, %s, %s, 100, %s, 'test') on conflict do nothing""",
            [(t, p, f"{p}-activity-dev", active) for t, p, active in rows])
    with _sign_in(app_url, clinics.a.email("therapist")) as c:
        page = c.get(f"/patients/{patient}")
        assert page.status_code == 200
        assert "Active minutes in the last 7 days: 30 (about 4 a day)" in page.text
