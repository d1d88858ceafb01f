"""Polar AccessLink webhooks through the gateway, against the local stand-in of AccessLink."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from rtm.contract import ActivityInterval, decode
from rtm.settings import Settings
from rtm.topics import RAW_ACTIVITY
from tests.device_adapters.polar_fake import PolarFake
from tests.ingest.conftest import Device, read_topic
from tests.ingest.test_upload import assert_problem

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
    bad = {**headers, "Polar-Webhook-Signature": "0" * 64}
    assert_problem(client.post(URL, content=body, headers=bad), 401, "invalid-signature")
    assert_problem(
        client.post(URL, content=body, headers={"Content-Type": "application/json"}), 401, "invalid-signature"
    )
    body, headers = polar_fake.notification(
        {"event": "ACTIVITY_SUMMARY", "user_id": 999999, "date": "2026-01-01"}
    )
    assert client.post(URL, content=body, headers=headers).json()["outcome"] == "unlinked"
    body, headers = polar_fake.notification({"event": "SLEEP", "user_id": 1, "date": "2026-01-01"})
    assert client.post(URL, content=body, headers=headers).json()["outcome"] == "ignored"


def test_activity_summary_fetches_and_publishes(
    client: TestClient, device: Device, polar_fake: PolarFake, db_settings: Settings
) -> None:
    user, token = 475, "polar-token-475"
    polar_fake.tokens[token] = user
    _link(client, device, user, token)
    day = (datetime.now(UTC) - timedelta(days=2)).date()
    d = day.isoformat()
    slots = [(f"{d}T08:0{m}", s) for m, s in enumerate([0, 0, 30, 30, 30, 12])]
    polar_fake.add_day(user, d, slots)
    body, headers = polar_fake.notification(
        {
            "event": "ACTIVITY_SUMMARY",
            "user_id": user,
            "date": d,
            "timestamp": datetime.now(UTC).isoformat(),
            "url": f"https://www.polaraccesslink.com/v3/users/activities/{d}",
        }
    )
    r = client.post(URL, content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "accepted" and r.json()["accepted"] == 6
    assert client.post(URL, content=body, headers=headers).json()["duplicates"] == 6  # redelivery
    got = sorted(
        (
            e
            for e in (
                decode(v) for v in read_topic(db_settings, RAW_ACTIVITY.name, device.care.patient_id.encode())
            )
            if isinstance(e, ActivityInterval) and e.source == "vendor_cloud"
        ),
        key=lambda e: e.start,
    )
    assert [e.steps for e in got] == [s for _, s in slots]  # filtered repeats restored
    assert got[0].zone_offset_s in (7200, 10800)  # Helsinki wall clock to UTC
    assert got[0].start.hour == 8 - got[0].zone_offset_s // 3600

    polar_fake.fail_next = 1
    r = client.post(URL, content=body, headers=headers)
    assert_problem(r, 503, "upstream-unavailable")
    assert "retry-after" in r.headers
