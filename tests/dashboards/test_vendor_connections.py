"""Vendor-cloud connections in the clinic app: their health (never their tokens) readable by the app
role for its own clinic only, shown on the patient page and, when the therapist must act, in the
review queue; against the real database and app."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from dashboards.records import connection_in_words
from tests.dashboards.conftest import PASSWORD, Clinics

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


def _connect(conn: psycopg.Connection, vendor: str, patient_id: str, clinic_id: str, status: str,
             last_success: datetime | None, error: str | None = None) -> None:  # fmt: skip
    """A connection of the patient's demo device, as the gateway's syncer leaves it (owner: the test
    writes what the gateway would, without its OAuth round trip)."""
    cred = f"cred-{vendor}-{patient_id}"
    conn.execute(
        """insert into ingest_device_credentials (credential_id, device_id, patient_id, episode_id, clinic_id,
               valid_from, secret_hash) values (%s, %s, %s, %s, %s, %s, %s) on conflict do nothing""",
        (cred, f"{patient_id}-dev", patient_id, f"{patient_id}-ep", clinic_id, NOW - timedelta(days=40), b"\0" * 32),
    )
    conn.execute(
        """insert into vendor_connections (vendor, vendor_user_id, credential_id, tz, status, token_key_id,
               token_ciphertext, token_expires_at, synced_through, last_success_at, last_error_at, last_error,
               created_at)
           values (%s, %s, %s, 'UTC', %s, 'k1', %s, %s, %s, %s, %s, %s, %s)""",
        (vendor, f"user-{patient_id}", cred, status, b"secret-token-ciphertext", NOW + timedelta(hours=2),
         (last_success or NOW).date() - timedelta(days=1), last_success, NOW if error else None, error,
         NOW - timedelta(days=30)),
    )  # fmt: skip


@pytest.fixture(scope="module")
def connected(clinics: Clinics) -> Clinics:
    a, b = clinics.a_patients, clinics.b_patients
    with psycopg.connect(clinics.settings.dsn("owner"), autocommit=True) as conn:
        _connect(conn, "oura", a[0], "clinic-a", "reauthorization_required", NOW - timedelta(days=2),
                 "Oura answered 401: invalid_token")  # fmt: skip
        _connect(conn, "withings", a[1], "clinic-a", "active", NOW - timedelta(days=10), "Withings status 503")
        _connect(conn, "garmin", a[2], "clinic-a", "active", NOW - timedelta(hours=3))  # healthy
        _connect(conn, "polar", a[3], "clinic-a", "disconnected", NOW - timedelta(days=20))  # on purpose
        _connect(conn, "google", b[0], "clinic-b", "revoked", NOW - timedelta(days=5), "clinic B's error")
    return clinics


def test_app_role_reads_its_own_clinics_connection_health_only(connected: Clinics) -> None:
    a, b = connected.a_patients, connected.b_patients
    with psycopg.connect(connected.settings.dsn("app")) as conn:
        conn.execute("select set_config('rtm.clinic', 'clinic-a', true)")
        rows = conn.execute("select vendor, patient_id, status from app_vendor_connections order by vendor").fetchall()
        assert rows == [("garmin", a[2], "active"), ("oura", a[0], "reauthorization_required"),
                        ("polar", a[3], "disconnected"), ("withings", a[1], "active")]  # fmt: skip
        assert conn.execute("select count(*) from app_vendor_connections where patient_id = any(%s)",
                            (b,)).fetchone()[0] == 0  # fmt: skip
        conn.rollback()
        conn.execute("select set_config('rtm.clinic', 'clinic-b', true)")
        assert conn.execute("select vendor, patient_id from app_vendor_connections").fetchall() == [("google", b[0])]
        conn.rollback()
        assert conn.execute("select count(*) from app_vendor_connections").fetchone()[0] == 0  # no clinic set


def test_token_columns_are_not_readable_by_the_app_role(connected: Clinics) -> None:
    with psycopg.connect(connected.settings.dsn("app")) as conn:
        conn.execute("select set_config('rtm.clinic', 'clinic-a', true)")
        for query in ("select token_ciphertext from vendor_connections", "select token_key_id from vendor_connections",
                      "select * from vendor_connections"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"), conn.transaction():
                conn.execute(query)
        cur = conn.execute("select * from app_vendor_connections limit 0")
        columns = {d.name for d in cur.description or []}
        assert {"status", "token_expires_at", "last_error"} <= columns
        assert {c for c in columns if c.startswith("token_")} == {"token_expires_at"}
        with pytest.raises(psycopg.errors.UndefinedColumn), conn.transaction():
            conn.execute("select token_ciphertext from app_vendor_connections")


@contextmanager
def _sign_in(url: str, email: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, follow_redirects=True) as c:
        r = c.post("/login", data={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        yield c


def _queue_rows(html: str) -> list[str]:
    table = html.split('id="h-connections"', 1)[1]
    return re.findall(r'<tr id="conn-[^"]+">(.*?)</tr>', table, flags=re.S)


def test_connections_on_the_patient_page_and_in_the_queue(connected: Clinics, app_url: str) -> None:
    a = connected.a_patients
    with _sign_in(app_url, connected.a.email("therapist")) as c:
        page = c.get(f"/patients/{a[0]}")
        assert page.status_code == 200
        section = page.text.split('id="connections"', 1)[1].split("</ul>", 1)[0]
        assert "Oura" in section and "needs the patient to reconnect" in section
        assert "Oura answered 401: invalid_token" in section
        assert (NOW - timedelta(days=2)).strftime("%Y-%m-%d %H:%M") in section  # last successful sync
        assert f"synced through {(NOW - timedelta(days=3)).date()}" in section
        assert (NOW + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M") in section  # token expiry
        healthy = c.get(f"/patients/{a[2]}").text.split('id="connections"', 1)[1].split("</ul>", 1)[0]
        assert "Garmin" in healthy and "syncing" in healthy and "last error none" in " ".join(healthy.split())

        rows = _queue_rows(c.get("/queue").text)
        assert len(rows) == 2, rows  # re-authorisation and silence; not the healthy nor the disconnected one
        assert f"/patients/{a[0]}" in rows[0] and "Oura connection needs the patient to reconnect" in rows[0]
        assert f"/patients/{a[1]}" in rows[1] and "Withings connection no successful sync for 10 days" in rows[1]
        assert "clinic B" not in "".join(rows)
    with psycopg.connect(connected.settings.dsn("owner")) as conn:
        audited = conn.execute(
            """select count(*) from app_audit_log where action = 'view queue' and staff_id = 'clinic-a-therapist'
                  and patient_id = %s""", (a[1],)).fetchone()[0]  # fmt: skip
    assert audited >= 1  # the patients shown for a connection are in the audit log too
    with _sign_in(app_url, connected.b.email("therapist")) as c:
        rows = _queue_rows(c.get("/queue").text)
        assert len(rows) == 1 and "Google Health connection access revoked" in rows[0]


@pytest.mark.parametrize(("status", "success_days_ago", "problem", "words"), [
    ("active", 1, False, "syncing"),
    ("active", 3, True, "no successful sync for 3 days"),
    ("active", None, True, "no successful sync since it was connected 30 days ago"),
    ("reauthorization_required", 0, True, "needs the patient to reconnect"),
    ("revoked", 0, True, "access revoked at the vendor"),
    ("disconnected", 40, False, "disconnected"),
])  # fmt: skip
def test_connection_in_words(status: str, success_days_ago: int | None, problem: bool, words: str) -> None:
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    last = None if success_days_ago is None else now - timedelta(days=success_days_ago)
    got = connection_in_words(status, last, now - timedelta(days=30), now, silent_days=3)
    assert got[0] is problem and got[1].startswith(words)
