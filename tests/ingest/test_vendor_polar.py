"""Polar AccessLink connections end to end through the gateway and the AccessLink fake (over
HTTP): OAuth connect, first sync and backfill, incremental sync, running totals, revocation,
rate limits, a DST day and a time-zone change, webhook registration and re-registration."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from device_adapters.cloud import polar
from device_adapters.cloud.errors import VendorRejected, VendorUnavailable
from device_adapters.cloud.fakes.polar import PolarFake
from device_adapters.cloud.fakes.server import serve
from rtm.settings import Settings
from tests.ingest.conftest import Care, Device, build_client, enrol, make_care
from tests.ingest.test_upload import assert_problem
from tests.ingest.vendor_helpers import connection, intervals, wait_queue_empty

pytestmark = pytest.mark.integration
HOOK = "/v1/webhooks/polar"


def connect(client: TestClient, fake: PolarFake, dev: Device, user: int, tz: str) -> dict[str, Any]:
    """The clinic asks for a link, the patient consents at the fake, the browser comes back."""
    r = client.post(
        "/v1/vendor-connections/polar/authorize",
        json={"credential_id": dev.credential_id, "tz": tz},
        headers={"Authorization": f"Bearer {dev.care.clinic_token}"},
    )
    assert r.status_code == 201, r.text
    auth_url = r.json()["authorization_url"]
    assert auth_url.startswith(f"{fake.base_url}/oauth2/authorization?")
    back = httpx.URL(fake.consent(auth_url, user))
    assert back.path == "/v1/oauth/polar/callback" and back.params["state"] == r.json()["state"]
    done = client.get(f"{back.path}?{back.query.decode()}")
    assert done.status_code == 200 and done.json()["connected"] is True, done.text
    # The link is single use.
    assert_problem(client.get(f"{back.path}?{back.query.decode()}"), 400, "invalid-request")
    return {"state": r.json()["state"]}


def minute_day(d: date, start_hour: int, steps: list[int]) -> list[tuple[str, int]]:
    return [(f"{d.isoformat()}T{start_hour + m // 60:02d}:{m % 60:02d}", s) for m, s in enumerate(steps)]


def test_connect_backfill_incremental_running_totals_and_revocation(
    client: TestClient, polar_fake: PolarFake, care: Care, db_settings: Settings
) -> None:
    tz = ZoneInfo("America/Chicago")
    dev = enrol(client, care, valid_from=datetime.now(UTC) - timedelta(days=5))
    user = 5001
    today = datetime.now(tz).date()
    past = [today - timedelta(days=k) for k in (4, 2)]
    for d in past:
        polar_fake.add_day(user, d.isoformat(), minute_day(d, 9, [10, 10, 20, 0]))
    polar_fake.data_calls.clear()
    connect(client, polar_fake, dev, user, "America/Chicago")
    assert user in polar_fake.registered  # registered with AccessLink after the code exchange
    wait_queue_empty(db_settings, "polar", str(user))
    # First sync: every day from the enrolment's local date to today, once.
    fetched = sorted(d for u, d in polar_fake.data_calls if u == user)
    first_day = (datetime.now(UTC) - timedelta(days=5)).astimezone(tz).date()
    want = [(first_day + timedelta(days=k)).isoformat() for k in range((today - first_day).days + 1)]
    assert fetched == want
    row = connection(db_settings, "polar", str(user))
    assert row["status"] == "active" and row["synced_through"] == today - timedelta(days=1)
    got = intervals(db_settings, care.patient_id, dev.device_id)
    assert sum(e.steps for e in got.values()) == 2 * 40

    # Incremental: today's data arrives through the day; only today is fetched (no gap).
    polar_fake.data_calls.clear()
    polar_fake.add_day(user, today.isoformat(), minute_day(today, 0, [5, 5, 7]))
    body, headers = polar_fake.activity_summary(user, today.isoformat())
    assert client.post(HOOK, content=body, headers=headers).json()["outcome"] == "queued"
    wait_queue_empty(db_settings, "polar", str(user))
    assert [d for u, d in polar_fake.data_calls if u == user] == [today.isoformat()]
    # Running totals: a later delivery of the same day with a changed slot replaces, never adds.
    polar_fake.add_day(user, today.isoformat(), minute_day(today, 0, [5, 9, 7, 3]))
    time.sleep(0.01)  # a new notification timestamp, so a new notification id
    body, headers = polar_fake.activity_summary(user, today.isoformat())
    assert client.post(HOOK, content=body, headers=headers).json()["outcome"] == "queued"
    wait_queue_empty(db_settings, "polar", str(user))
    got = intervals(db_settings, care.patient_id, dev.device_id)
    todays = sorted((e for e in got.values() if e.start.astimezone(tz).date() == today), key=lambda e: e.start)
    assert [e.steps for e in todays] == [5, 9, 7, 3]
    assert row["synced_through"] == connection(db_settings, "polar", str(user))["synced_through"]

    # Revocation: the patient withdraws consent at Polar. The connection is marked for the clinic
    # and not retried: later notifications do not reach AccessLink.
    polar_fake.revoke(user)
    body, headers = polar_fake.activity_summary(user, today.isoformat())
    client.post(HOOK, content=body, headers=headers)
    wait_queue_empty(db_settings, "polar", str(user))
    row = connection(db_settings, "polar", str(user))
    assert row["status"] == "reauthorization_required" and "refused" in row["last_error"]
    calls = polar_fake.calls
    time.sleep(0.01)
    body, headers = polar_fake.activity_summary(user, today.isoformat())
    assert client.post(HOOK, content=body, headers=headers).json()["outcome"] == "connection-reauthorization-required"
    time.sleep(0.5)
    assert polar_fake.calls == calls
    health = client.get(
        f"/v1/vendor-connections?patient_id={care.patient_id}",
        headers={"Authorization": f"Bearer {care.clinic_token}"},
    ).json()["connections"]
    assert any(h["vendor_user_id"] == str(user) and h["status"] == "reauthorization_required" for h in health)
    # Connecting again (a new consent) makes it active and keeps the sync progress.
    connect(client, polar_fake, dev, user, "America/Chicago")
    wait_queue_empty(db_settings, "polar", str(user))
    assert connection(db_settings, "polar", str(user))["status"] == "active"


def test_oauth_refusals(client: TestClient, polar_fake: PolarFake, device: Device, db_settings: Settings) -> None:
    assert_problem(client.get("/v1/oauth/polar/callback?state=" + "x" * 43 + "&code=abc"), 400, "invalid-request")
    r = client.post(
        "/v1/vendor-connections/polar/authorize",
        json={"credential_id": device.credential_id, "tz": "Mars/Base"},
        headers={"Authorization": f"Bearer {device.care.clinic_token}"},
    )
    assert r.status_code == 422
    r = client.post("/v1/vendor-connections/polar/authorize", json={"credential_id": device.credential_id, "tz": "UTC"})
    assert r.status_code == 401
    other = make_care(db_settings)
    r = client.post(
        "/v1/vendor-connections/polar/authorize",
        json={"credential_id": device.credential_id, "tz": "UTC"},
        headers={"Authorization": f"Bearer {other.clinic_token}"},
    )
    assert_problem(r, 404, "not-found")  # another clinic's enrolment
    # The patient declines at Polar: the state is spent and nothing is connected.
    r = client.post(
        "/v1/vendor-connections/polar/authorize",
        json={"credential_id": device.credential_id, "tz": "UTC"},
        headers={"Authorization": f"Bearer {device.care.clinic_token}"},
    )
    state = r.json()["state"]
    assert_problem(client.get(f"/v1/oauth/polar/callback?state={state}&error=access_denied"), 400, "invalid-request")


@pytest.fixture()
def limited(db_settings: Settings, polar_fake: PolarFake) -> Iterator[TestClient]:
    # A per-user budget of 3 requests, refilled at 4 per second: a backfill has to wait for it.
    with build_client(db_settings, polar_fake, vendor={"user_burst": 3, "user_rate_per_s": 4.0}) as c:
        yield c


def test_rate_limits_vendor_429_and_per_user_budget(
    limited: TestClient, polar_fake: PolarFake, db_settings: Settings
) -> None:
    care = make_care(db_settings)
    dev = enrol(limited, care, valid_from=datetime.now(UTC) - timedelta(days=8))
    user = 5002
    tz = ZoneInfo("Europe/Berlin")
    d = datetime.now(tz).date() - timedelta(days=3)
    polar_fake.add_day(user, d.isoformat(), minute_day(d, 12, [42, 0]))
    polar_fake.rate_budget, polar_fake.rate_reset_s = 2, 1  # AccessLink answers 429 after two calls
    started = time.monotonic()
    try:
        connect(limited, polar_fake, dev, user, "Europe/Berlin")
        deadline = time.monotonic() + 20
        while connection(db_settings, "polar", str(user))["not_before"] is None:
            assert time.monotonic() < deadline, "the 429 was not honoured"
            time.sleep(0.05)
        row = connection(db_settings, "polar", str(user))
        assert "rate limited" in row["last_error"] and row["status"] == "active"
        polar_fake.rate_budget = None
        wait_queue_empty(db_settings, "polar", str(user))
    finally:
        polar_fake.rate_budget = None
    row = connection(db_settings, "polar", str(user))
    assert row["last_error"] is None and row["synced_through"] == datetime.now(tz).date() - timedelta(days=1)
    # 9-10 days with a budget of 3 then 4/s, and a 1 s wait after the 429: not all at once.
    assert time.monotonic() - started > 1.5
    got = intervals(db_settings, care.patient_id, dev.device_id)
    assert sum(e.steps for e in got.values()) == 42


def _last_dst_day(tz: ZoneInfo, before: date) -> date:
    d = before - timedelta(days=1)
    while datetime.combine(d, datetime.min.time(), tz).utcoffset() == datetime.combine(
        d + timedelta(days=1), datetime.min.time(), tz
    ).utcoffset():
        d -= timedelta(days=1)
    return d


@pytest.fixture()
def long_backfill(db_settings: Settings, polar_fake: PolarFake) -> Iterator[TestClient]:
    with build_client(
        db_settings, polar_fake, vendor={"backfill_days": 400, "user_rate_per_s": 1000.0, "user_burst": 1000}
    ) as c:
        yield c


def test_dst_day_and_time_zone_change(
    long_backfill: TestClient, polar_fake: PolarFake, db_settings: Settings
) -> None:
    client = long_backfill
    ny = ZoneInfo("America/New_York")
    today = datetime.now(ny).date()
    dst = _last_dst_day(ny, today)
    care = make_care(db_settings)
    with psycopg.connect(db_settings.dsn("owner"), autocommit=True) as conn:
        conn.execute(
            "update episodes set start_date = %s where episode_id = %s", (dst - timedelta(days=2), care.episode_id)
        )
    dev = enrol(client, care, valid_from=datetime.combine(dst - timedelta(days=1), datetime.min.time(), ny))
    user = 5003
    # Hourly samples all day, 100 steps each hour: a DST day has 23 or 25 local hours.
    # (aware datetimes of one zone subtract as wall-clock times: compare them in UTC)
    hours = int((datetime.combine(dst + timedelta(days=1), datetime.min.time(), ny).astimezone(UTC)
                 - datetime.combine(dst, datetime.min.time(), ny).astimezone(UTC)).total_seconds() // 3600)
    assert hours in (23, 25)
    polar_fake.interval_ms = 3_600_000
    try:
        slots = []
        t = datetime.combine(dst, datetime.min.time(), ny).astimezone(UTC)
        for k in range(hours):
            local = (t + timedelta(hours=k)).astimezone(ny)
            slots.append((local.strftime("%Y-%m-%dT%H:%M"), 100 + k))  # distinct values: none filtered
        polar_fake.add_day(user, dst.isoformat(), slots)
        # The patient moved to Los Angeles yesterday (recorded in the time-zone history); data for
        # yesterday is on Los Angeles wall-clock time.
        yday = today - timedelta(days=1)
        polar_fake.add_day(user, yday.isoformat(), [(f"{yday.isoformat()}T08:00", 7), (f"{yday.isoformat()}T09:00", 0)])
        moved = datetime.combine(yday, datetime.min.time(), ny)
        with psycopg.connect(db_settings.dsn("owner"), autocommit=True) as conn:
            conn.execute(
                "insert into patient_timezones (patient_id, effective_from, tz) values (%s, %s, %s), (%s, %s, %s)",
                (care.patient_id, moved - timedelta(days=400), "America/New_York",
                 care.patient_id, moved, "America/Los_Angeles"),
            )
        connect(client, polar_fake, dev, user, "America/New_York")
        wait_queue_empty(db_settings, "polar", str(user), timeout_s=120)
    finally:
        polar_fake.interval_ms = 60_000
    got = sorted(intervals(db_settings, care.patient_id, dev.device_id).values(), key=lambda e: e.start)
    on_dst = [e for e in got if e.start.astimezone(ny).date() == dst]
    assert len(on_dst) == hours and [e.steps for e in on_dst] == [100 + k for k in range(hours)]
    assert len({e.zone_offset_s for e in on_dst}) == 2  # both offsets of the day
    assert all(e.end - e.start == timedelta(hours=1) for e in on_dst)
    la = ZoneInfo("America/Los_Angeles")
    yday_events = [e for e in got if e.steps == 7]
    assert len(yday_events) == 1
    assert yday_events[0].start == datetime.combine(yday, datetime.min.time(), la).replace(hour=8).astimezone(UTC)
    offset = yday_events[0].start.astimezone(la).utcoffset()
    assert offset is not None and yday_events[0].zone_offset_s == int(offset.total_seconds())


def test_webhook_registration_and_reregistration(client: TestClient) -> None:
    """Against a fresh fake: creating the webhook makes AccessLink PING the gateway first (signed
    with a secret the gateway cannot know yet: a PING is answered 200 unverified, it carries
    nothing); a changed URL or a deactivated webhook is re-registered."""
    fake = PolarFake(webhook_secret=None)
    fake.deliver = lambda url, body, headers: client.post(HOOK, content=body, headers=headers).status_code
    served = serve(fake.app())
    try:
        pc = polar.PolarClient(httpx.AsyncClient(), served.url, 5.0, fake.client_id, fake.client_secret)
        bad = polar.PolarClient(httpx.AsyncClient(), served.url, 5.0, fake.client_id, "wrong")
        url = "https://clinic.example/v1/webhooks/polar"

        async def run() -> list[tuple[str, str | None, str]]:
            out = [await pc.ensure_webhook(url, ["ACTIVITY_SUMMARY"])]
            out.append(await pc.ensure_webhook(url, ["ACTIVITY_SUMMARY"]))
            assert fake.webhook is not None
            fake.webhook.active = False  # AccessLink deactivated it after failed deliveries
            out.append(await pc.ensure_webhook("https://new.example/v1/webhooks/polar", ["ACTIVITY_SUMMARY"]))
            with pytest.raises(VendorRejected):
                await bad.ensure_webhook(url, ["ACTIVITY_SUMMARY"])
            return out

        created, unchanged, redone = asyncio.run(run())
    finally:
        served.stop()
    assert created[2] == "created" and created[1] is not None and len(created[1]) >= 32
    assert unchanged == (created[0], None, "unchanged")
    assert redone == (created[0], None, "updated+activated")
    assert fake.webhook is not None and fake.webhook.active and fake.webhook.url.startswith("https://new.example")
    # A gateway that does not answer the PING gets no webhook.
    fake2 = PolarFake(webhook_secret=None, deliver=lambda url, body, headers: 503)
    served = serve(fake2.app())
    try:
        pc2 = polar.PolarClient(httpx.AsyncClient(), served.url, 5.0, fake2.client_id, fake2.client_secret)
        with pytest.raises(VendorUnavailable):
            asyncio.run(pc2.ensure_webhook(url, ["ACTIVITY_SUMMARY"]))
    finally:
        served.stop()
    assert fake2.webhook is None
