"""Polar AccessLink webhooks through the gateway, against the local fake of AccessLink: signature,
replay window and dedup, answered at once and processed by the vendor syncer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient

from device_adapters.cloud import polar
from device_adapters.cloud.fakes.polar import PolarFake
from rtm.settings import Settings
from tests.ingest.conftest import Device
from tests.ingest.test_upload import assert_problem
from tests.ingest.vendor_helpers import connection, intervals, notification, wait_queue_empty

pytestmark = pytest.mark.integration
URL = "/v1/webhooks/polar"


def _link(client: TestClient, dev: Device, user: int, token: str, tz: str = "Europe/Helsinki") -> None:
    r = client.put(
        "/v1/vendor-links/polar",
        json={"credential_id": dev.credential_id, "polar_user_id": user, "access_token": token, "tz": tz},
        headers={"Authorization": f"Bearer {dev.care.clinic_token}"},
    )
    assert r.status_code == 204, r.text


def test_signature_ping_and_unknown_user(client: TestClient, polar_fake: PolarFake) -> None:
    body, headers = polar_fake.notification({"event": "PING", "timestamp": "2026-01-01T00:00:00Z"})
    assert client.post(URL, content=body, headers=headers).json()["outcome"] == "ping"
    # A PING is answered even unverified (a new webhook is PINGed before its secret is known) ...
    bad = {**headers, "Polar-Webhook-Signature": "0" * 64}
    assert client.post(URL, content=body, headers=bad).json()["outcome"] == "ping"
    # ... anything else needs the signature.
    body, headers = polar_fake.activity_summary(999999, "2026-01-01")
    bad = {**headers, "Polar-Webhook-Signature": "0" * 64}
    assert_problem(client.post(URL, content=body, headers=bad), 401, "invalid-signature")
    assert_problem(
        client.post(URL, content=body, headers={"Content-Type": "application/json"}), 401, "invalid-signature"
    )
    body, headers = polar_fake.activity_summary(999999, "2026-01-01")
    assert client.post(URL, content=body, headers=headers).json()["outcome"] == "unlinked"
    body, headers = polar_fake.notification({"event": "SLEEP", "user_id": 1, "date": "2026-01-01"})
    assert client.post(URL, content=body, headers=headers).json()["outcome"] == "ignored"


def test_forged_and_replayed_notifications_are_refused(
    client: TestClient, device: Device, polar_fake: PolarFake, db_settings: Settings
) -> None:
    user, token = 476, "polar-token-476"
    polar_fake.tokens[token] = user
    polar_fake.registered.add(user)
    _link(client, device, user, token)
    d = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    # Forged: signed with another key, or the body changed after signing.
    body, headers = polar_fake.notification(
        {"event": "ACTIVITY_SUMMARY", "user_id": user, "date": d, "timestamp": datetime.now(UTC).isoformat()},
        secret=b"not-the-webhook-secret",
    )
    assert_problem(client.post(URL, content=body, headers=headers), 401, "invalid-signature")
    body, headers = polar_fake.activity_summary(user, d)
    assert_problem(client.post(URL, content=body.replace(b"476", b"477"), headers=headers), 401, "invalid-signature")
    # Replayed: a genuine old notification (outside the window) is refused; a repeat inside the
    # window is acknowledged once more but not processed again.
    old = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    body_old, headers_old = polar_fake.notification(
        {"event": "ACTIVITY_SUMMARY", "user_id": user, "date": d, "timestamp": old}
    )
    assert_problem(client.post(URL, content=body_old, headers=headers_old), 400, "stale-notification")
    r = client.post(URL, content=body, headers=headers)
    assert r.status_code == 200 and r.json()["outcome"] == "queued"
    assert client.post(URL, content=body, headers=headers).json()["outcome"] == "duplicate"
    wait_queue_empty(db_settings, "polar", str(user))
    n = notification(db_settings, "polar", polar.notification_id(body))
    assert n is not None and n["status"] == "done" and n["attempts"] == 1


def test_activity_summary_fetched_after_the_answer(
    client: TestClient, device: Device, polar_fake: PolarFake, db_settings: Settings
) -> None:
    user, token = 475, "polar-token-475"
    polar_fake.tokens[token] = user
    polar_fake.registered.add(user)
    _link(client, device, user, token)
    tz = ZoneInfo("Europe/Helsinki")
    day = (datetime.now(tz) - timedelta(days=2)).date()
    d = day.isoformat()
    steps = [0, 0, 30, 30, 30, 12, 0]
    polar_fake.add_day(user, d, [(f"{d}T08:0{m}", s) for m, s in enumerate(steps)])
    polar_fake.fail_next = 1  # the first fetch fails: the syncer retries with back-off
    body, headers = polar_fake.activity_summary(user, d)
    r = client.post(URL, content=body, headers=headers)
    assert r.status_code == 200 and r.json()["outcome"] == "queued"
    wait_queue_empty(db_settings, "polar", str(user))
    n = notification(db_settings, "polar", polar.notification_id(body))
    assert n is not None and n["status"] == "done" and n["attempts"] >= 2
    got = sorted(intervals(db_settings, device.care.patient_id, device.device_id).values(), key=lambda e: e.start)
    assert [e.steps for e in got[:7]] == steps  # filtered repeats restored
    midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
    assert got[-1].end == midnight  # a complete day: the last value (0) runs to local midnight
    assert sum(e.steps for e in got) == sum(steps)
    assert got[0].start.astimezone(tz).hour == 8 and got[0].zone_offset_s in (7200, 10800)
    row = connection(db_settings, "polar", str(user))
    assert token.encode() not in bytes(row["token_ciphertext"])  # encrypted at rest
    assert row["last_error"] is None and row["last_success_at"] is not None
    with psycopg.connect(db_settings.dsn("owner")) as conn:
        legacy = conn.execute("select count(*) from ingest_vendor_links where access_token = %s", (token,))
        assert legacy.fetchone() == (0,)  # the plain-text table is no longer written
