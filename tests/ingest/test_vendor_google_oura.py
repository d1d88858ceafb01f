"""Google Health API v4 and Oura API v2 connections end to end through the gateway and the
vendors' local fakes (over HTTP): OAuth connect, first sync and backfill, incremental sync by
webhook, running totals, token refresh and revocation, subscriber verification and the Oura
challenge, forged and replayed notifications, rate limits and paging, a DST day and a zone change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from device_adapters.cloud import google_health, oura
from device_adapters.cloud.errors import VendorUnavailable
from device_adapters.cloud.fakes.google_health import GoogleHealthFake
from device_adapters.cloud.fakes.oura import OuraFake
from device_adapters.cloud.fakes.polar import PolarFake
from device_adapters.cloud.fakes.server import serve
from rtm.settings import Settings
from tests.ingest.conftest import Care, Device, build_client, enrol, make_care
from tests.ingest.test_upload import assert_problem
from tests.ingest.vendor_helpers import connection, intervals, notification, wait_queue_empty

pytestmark = pytest.mark.integration
G_HOOK, O_HOOK = "/v1/webhooks/google-health", "/v1/webhooks/oura"
G_SECRET = "Bearer google-subscriber-test-secret"
O_TOKEN = "oura-verification-test-token"


@pytest.fixture(scope="module")
def gfake() -> Iterator[GoogleHealthFake]:
    fake = GoogleHealthFake()
    served = serve(fake.app())
    fake.base_url = served.url
    yield fake
    served.stop()


@pytest.fixture(scope="module")
def ofake() -> Iterator[OuraFake]:
    fake = OuraFake()
    served = serve(fake.app())
    fake.base_url = served.url
    yield fake
    served.stop()


def vendor_overrides(g: GoogleHealthFake, o: OuraFake, **extra: Any) -> dict[str, Any]:
    return {
        "google_health_client_id": g.client_id, "google_health_client_secret": SecretStr(g.client_secret),
        "google_health_authorize_url": f"{g.base_url}/o/oauth2/v2/auth",
        "google_health_token_url": f"{g.base_url}/token", "google_health_api_base": g.base_url,
        "google_health_webhook_secret": SecretStr(G_SECRET),
        "oura_client_id": o.client_id, "oura_client_secret": SecretStr(o.client_secret),
        "oura_authorize_url": f"{o.base_url}/oauth/authorize", "oura_token_url": f"{o.base_url}/oauth/token",
        "oura_api_base": o.base_url, "oura_verification_token": SecretStr(O_TOKEN),
        # One configuration for every gateway of this module: they share the notification queue.
        "revision_days": 1, "backfill_days": 400, "user_rate_per_s": 1000.0, "user_burst": 1000, **extra,
    }


@pytest.fixture(scope="module")
def vclient(
    db_settings: Settings, polar_fake: PolarFake, gfake: GoogleHealthFake, ofake: OuraFake
) -> Iterator[TestClient]:
    with build_client(db_settings, polar_fake, vendor=vendor_overrides(gfake, ofake)) as c:
        yield c


def connect(client: TestClient, consent: Any, vendor: str, dev: Device, user: str, tz: str) -> None:
    r = client.post(f"/v1/vendor-connections/{vendor}/authorize", json={"credential_id": dev.credential_id, "tz": tz},
                    headers={"Authorization": f"Bearer {dev.care.clinic_token}"})
    assert r.status_code == 201, r.text
    back = httpx.URL(consent(r.json()["authorization_url"], user))
    assert back.path == f"/v1/oauth/{vendor}/callback"
    done = client.get(f"{back.path}?{back.query.decode()}")
    assert done.status_code == 200 and done.json()["connected"] is True, done.text
    assert_problem(client.get(f"{back.path}?{back.query.decode()}"), 400, "invalid-request")  # single use


def local_steps(got: dict[Any, Any], tz: ZoneInfo, day: date) -> list[int]:
    return [e.steps for e in sorted(got.values(), key=lambda e: e.start) if e.start.astimezone(tz).date() == day]


# --- Google Health ---------------------------------------------------------------------------------


def test_google_backfill_incremental_running_totals_refresh_and_revocation(
    vclient: TestClient, gfake: GoogleHealthFake, db_settings: Settings
) -> None:
    client, care = vclient, make_care(db_settings)
    tz = ZoneInfo("America/Chicago")
    dev = enrol(client, care, valid_from=datetime.now(UTC) - timedelta(days=5))
    user = "g-5001"
    today = datetime.now(tz).date()
    for d in (today - timedelta(days=4), today - timedelta(days=2)):
        gfake.add_minutes(user, "America/Chicago", d, 9, [10, 10, 20, 0])
    gfake.token_lifetime_s = 60  # inside the refresh margin: every sync must refresh first
    gfake.data_calls.clear()
    try:
        connect(client, gfake.consent, "google-health", dev, user, "America/Chicago")
        wait_queue_empty(db_settings, "google-health", user)
        # First sync: one query per local day from the enrolment's date to today, nothing twice.
        first_day = (datetime.now(UTC) - timedelta(days=5)).astimezone(tz).date()
        want = [google_health.day_filter(*google_health.day_window(first_day + timedelta(days=k), "America/Chicago"))
                for k in range((today - first_day).days)]
        got_filters = [f for u, f in gfake.data_calls if u == user]
        assert got_filters[:-1] == want and len(got_filters) == len(want) + 1  # + today with its revision day
        row = connection(db_settings, "google-health", user)
        assert row["status"] == "active" and row["synced_through"] == today - timedelta(days=1)
        got = intervals(db_settings, care.patient_id, dev.device_id)
        assert sum(e.steps for e in got.values()) == 80 and all(e.end - e.start == timedelta(minutes=1)
                                                                for e in got.values())
        refreshed = gfake.refreshes
        assert refreshed >= 1  # the 60 s token was refreshed before the sync used it

        # Incremental: a notification for today fetches today (and the revision day), not the past.
        gfake.data_calls.clear()
        gfake.add_minutes(user, "America/Chicago", today, 0, [5, 5, 7])
        now = datetime.now(UTC)
        body, headers = gfake.notification(user, now - timedelta(minutes=3), now, secret=G_SECRET)
        assert client.post(G_HOOK, content=body, headers=headers).json()["outcome"] == "queued"
        wait_queue_empty(db_settings, "google-health", user)
        assert len([f for u, f in gfake.data_calls if u == user]) == 1
        assert gfake.refreshes > refreshed
        # Running totals: Google rewrites a minute and adds one; stored values replace, never add.
        gfake.add_minutes(user, "America/Chicago", today, 0, [5, 9, 7, 3])
        body, headers = gfake.notification(user, now - timedelta(minutes=4), now, secret=G_SECRET)
        assert client.post(G_HOOK, content=body, headers=headers).json()["outcome"] == "queued"
        wait_queue_empty(db_settings, "google-health", user)
        assert local_steps(intervals(db_settings, care.patient_id, dev.device_id), tz, today) == [5, 9, 7, 3]

        # Revocation: the refresh is refused; the clinic sees it; later notifications cost nothing.
        gfake.revoke(user)
        body, headers = gfake.notification(user, now, now + timedelta(minutes=1), secret=G_SECRET)
        client.post(G_HOOK, content=body, headers=headers)
        wait_queue_empty(db_settings, "google-health", user)
        row = connection(db_settings, "google-health", user)
        assert row["status"] == "reauthorization_required" and "invalid_grant" in row["last_error"]
        calls = gfake.calls
        body, headers = gfake.notification(user, now, now + timedelta(minutes=2), secret=G_SECRET)
        assert client.post(G_HOOK, content=body, headers=headers).json()["outcome"] == \
            "connection-reauthorization-required"
        time.sleep(0.5)
        assert gfake.calls == calls
        connect(client, gfake.consent, "google-health", dev, user, "America/Chicago")  # a new consent
        wait_queue_empty(db_settings, "google-health", user)
        assert connection(db_settings, "google-health", user)["status"] == "active"
    finally:
        gfake.token_lifetime_s = 3599


def test_google_subscriber_verification_forged_and_replayed(
    vclient: TestClient, gfake: GoogleHealthFake, db_settings: Settings
) -> None:
    client = vclient

    def via_gateway(url: str, body: bytes, headers: dict[str, str]) -> int:
        return int(client.post(G_HOOK, content=body, headers=headers).status_code)

    fake = GoogleHealthFake(deliver=via_gateway)
    served = serve(fake.app())
    try:
        for secret, ok in (("Bearer not-the-configured-one", False), (G_SECRET, True)):
            r = httpx.post(f"{served.url}/v4/projects/p1/subscribers", headers={"Authorization": "Bearer sa"},
                           json={"endpointUri": f"https://clinic.example{G_HOOK}",
                                 "endpointAuthorization": {"secret": secret}})
            assert (r.status_code == 200) is ok, r.text
        assert fake.subscriber is not None and fake.subscriber["secret"] == G_SECRET
    finally:
        served.stop()
    now = datetime.now(UTC)
    body, headers = fake.notification("g-unlinked", now, now + timedelta(minutes=1))
    assert client.post(G_HOOK, content=body, headers=headers).json()["outcome"] == "unlinked"
    # Forged: another secret, or none.
    assert_problem(client.post(G_HOOK, content=body, headers={**headers, "Authorization": "Bearer guess"}),
                   401, "invalid-signature")
    assert_problem(client.post(G_HOOK, content=body, headers={"Content-Type": "application/json"}),
                   401, "invalid-signature")
    # Replayed: a copy of an old notification is refused outside the window; inside it, the
    # same notification twice is processed once.
    old = orjson.loads(body)
    old["publishTime"] = (now - timedelta(days=3)).isoformat()
    assert_problem(client.post(G_HOOK, content=orjson.dumps(old), headers=headers), 400, "stale-notification")
    care = make_care(db_settings)
    dev = enrol(client, care, valid_from=now - timedelta(hours=2))
    user = "g-5002"
    connect(client, gfake.consent, "google-health", dev, user, "UTC")
    wait_queue_empty(db_settings, "google-health", user)
    body, headers = gfake.notification(user, now, now + timedelta(minutes=1), secret=G_SECRET)
    assert client.post(G_HOOK, content=body, headers=headers).json()["outcome"] == "queued"
    assert client.post(G_HOOK, content=body, headers=headers).json()["outcome"] == "duplicate"
    wait_queue_empty(db_settings, "google-health", user)


def _last_dst_day(tz: ZoneInfo, before: date) -> date:
    d = before - timedelta(days=1)
    while datetime.combine(d, datetime.min.time(), tz).utcoffset() == datetime.combine(
            d + timedelta(days=1), datetime.min.time(), tz).utcoffset():
        d -= timedelta(days=1)
    return d


def _moved_yesterday(db: Settings, patient_id: str, ny: ZoneInfo, yday: date) -> None:
    moved = datetime.combine(yday, datetime.min.time(), ny)
    with psycopg.connect(db.dsn("owner"), autocommit=True) as conn:
        conn.execute("insert into patient_timezones (patient_id, effective_from, tz) values (%s, %s, %s), "
                     "(%s, %s, %s)", (patient_id, moved - timedelta(days=400), "America/New_York",
                                      patient_id, moved, "America/Los_Angeles"))


def _care_since(db: Settings, since: date) -> Care:
    care = make_care(db)
    with psycopg.connect(db.dsn("owner"), autocommit=True) as conn:
        conn.execute("update episodes set start_date = %s where episode_id = %s", (since, care.episode_id))
    return care


def test_google_rate_limit_paging_dst_day_and_zone_change(
    vclient: TestClient, gfake: GoogleHealthFake, db_settings: Settings
) -> None:
    client = vclient
    ny, la = ZoneInfo("America/New_York"), ZoneInfo("America/Los_Angeles")
    today = datetime.now(ny).date()
    dst = _last_dst_day(ny, today)
    care = _care_since(db_settings, dst - timedelta(days=2))
    dev = enrol(client, care, valid_from=datetime.combine(dst - timedelta(days=1), datetime.min.time(), ny))
    user = "g-5003"
    day_start = datetime.combine(dst, datetime.min.time(), ny).astimezone(UTC)
    minutes = int((datetime.combine(dst + timedelta(days=1), datetime.min.time(), ny).astimezone(UTC)
                   - day_start).total_seconds() // 60)
    assert minutes in (23 * 60, 25 * 60)
    gfake.add_minutes(user, "America/New_York", dst, 0, [1] * minutes)  # every minute of the DST day
    yday = today - timedelta(days=1)
    gfake.add_minutes(user, "America/Los_Angeles", yday, 22, [7])  # 22:00 in Los Angeles: 01:00 in New York
    _moved_yesterday(db_settings, care.patient_id, ny, yday)
    gfake.per_user_per_min, gfake.retry_after, gfake.page_cap = 3, "1", 500
    try:
        connect(client, gfake.consent, "google-health", dev, user, "America/New_York")
        deadline = time.monotonic() + 20
        while connection(db_settings, "google-health", user)["not_before"] is None:
            assert time.monotonic() < deadline, "Google's 429 was not honoured"
            time.sleep(0.05)
        row = connection(db_settings, "google-health", user)
        assert "rate limited" in row["last_error"] and row["status"] == "active"
        gfake.per_user_per_min = 300
        wait_queue_empty(db_settings, "google-health", user, timeout_s=180)
    finally:
        gfake.per_user_per_min, gfake.retry_after, gfake.page_cap = 300, None, 10_000
    assert connection(db_settings, "google-health", user)["last_error"] is None
    got = sorted(intervals(db_settings, care.patient_id, dev.device_id).values(), key=lambda e: e.start)
    on_dst = [e for e in got if day_start <= e.start < day_start + timedelta(minutes=minutes)]
    assert len(on_dst) == minutes and sum(e.steps for e in on_dst) == minutes  # 3 pages, nothing lost or doubled
    assert len({e.zone_offset_s for e in on_dst}) == 2
    (moved,) = [e for e in got if e.steps == 7]
    assert moved.start == datetime.combine(yday, datetime.min.time(), la).replace(hour=22).astimezone(UTC)
    offset = moved.start.astimezone(la).utcoffset()
    assert offset is not None and moved.zone_offset_s == int(offset.total_seconds())
    # What was stored for the DST day is what Google's own civil-day roll-up says.
    token = next(t for t, (u, _) in gfake.tokens.items() if u == user)
    total = asyncio.run(_rollup(gfake, token, dst))
    assert total == minutes


async def _rollup(fake: GoogleHealthFake, token: str, day: date) -> int:
    async with httpx.AsyncClient() as http:
        return await google_health.GoogleHealthClient(http, fake.base_url, 5.0).daily_steps(token, day)


# --- Oura -------------------------------------------------------------------------------------------


def test_oura_backfill_paging_running_totals_refresh_and_revocation(
    vclient: TestClient, ofake: OuraFake, db_settings: Settings
) -> None:
    client, care = vclient, make_care(db_settings)
    tz = ZoneInfo("Europe/Helsinki")
    dev = enrol(client, care, valid_from=datetime.now(UTC) - timedelta(days=6))
    user = "o-6001"
    today = datetime.now(tz).date()
    first_day = (datetime.now(UTC) - timedelta(days=6)).astimezone(tz).date()
    # Oura's day of the enrolment date began at 4 a.m., possibly before the enrolment: from the next.
    for k in range(1, (today - first_day).days):
        ofake.set_day(user, first_day + timedelta(days=k), 1000 * k, "Europe/Helsinki")
    ofake.token_lifetime_s, ofake.page_size = 60, 1
    ofake.data_calls.clear()
    try:
        connect(client, ofake.consent, "oura", dev, user, "Europe/Helsinki")
        wait_queue_empty(db_settings, "oura", user)
        got = intervals(db_settings, care.patient_id, dev.device_id)
        want = {first_day + timedelta(days=k): 1000 * k for k in range(1, (today - first_day).days)}
        assert {e.start.astimezone(tz).date(): e.steps for e in got.values()} == want
        for e in got.values():  # Oura's day: from 4 a.m. to the local midnight of the same date
            assert e.start.astimezone(tz).hour == 4 and e.end.astimezone(tz).hour == 0
        # One query per past day (asking one day more: whether end_date is inclusive is not public)
        # and today's with its revision day; one document per page, so the queries page.
        calls = [c[1:] for c in ofake.data_calls if c[0] == user]
        days = [first_day + timedelta(days=k) for k in range((today - first_day).days)]
        queried = [(d.isoformat(), (d + timedelta(days=1)).isoformat()) for d in days]
        queried.append(((today - timedelta(days=1)).isoformat(), (today + timedelta(days=1)).isoformat()))
        assert sorted(set(calls)) == sorted(set(queried)) and len(calls) > len(set(calls))
        assert connection(db_settings, "oura", user)["synced_through"] == today - timedelta(days=1)
        refreshed = ofake.refreshes
        assert refreshed >= 1

        # Running totals through the day, and a late ring sync that rewrites yesterday. Today's
        # totals stay within what a walker can take since Oura's day began at 4 a.m. (at most 100
        # and 250 a minute), so the test holds at any hour.
        local_now = datetime.now(tz)
        since_4 = int((local_now - local_now.replace(hour=4, minute=0, second=0)).total_seconds() // 60)
        totals = (min(1500, 100 * max(1, since_4)), min(4200, 250 * max(1, since_4)))
        for steps in totals:
            ofake.set_day(user, today, steps, "Europe/Helsinki")
            ofake.set_day(user, today - timedelta(days=1), steps + 1, "Europe/Helsinki")
            body, headers = ofake.delivery(user, today)
            assert client.post(O_HOOK, content=body, headers=headers).json()["outcome"] == "queued"
            wait_queue_empty(db_settings, "oura", user)
        got = intervals(db_settings, care.patient_id, dev.device_id)
        by_day = {e.start.astimezone(tz).date(): e.steps for e in got.values()}
        if since_4 >= 1:  # before 4 a.m. Oura's today has not begun (nor in its first minute)
            assert by_day[today] == totals[1]  # the running total replaced, never added
        assert by_day[today - timedelta(days=1)] == totals[1] + 1
        assert ofake.refreshes > refreshed  # rotated single-use refresh tokens were kept each time

        ofake.revoke(user)
        body, headers = ofake.delivery(user, today)
        client.post(O_HOOK, content=body, headers=headers)
        wait_queue_empty(db_settings, "oura", user)
        row = connection(db_settings, "oura", user)
        assert row["status"] == "reauthorization_required" and "invalid_grant" in row["last_error"]
    finally:
        ofake.token_lifetime_s, ofake.page_size = 86_400, 50


def test_oura_challenge_subscriptions_forged_and_replayed(
    vclient: TestClient, ofake: OuraFake, db_settings: Settings
) -> None:
    client = vclient

    def challenge(url: str) -> tuple[int, bytes]:
        u = httpx.URL(url)
        r = client.get(f"{u.path}?{u.query.decode()}")
        return r.status_code, r.content

    fake = OuraFake(challenge=challenge)
    served = serve(fake.app())
    try:
        async def run() -> list[list[str]]:
            async with httpx.AsyncClient() as http:
                oc = oura.OuraClient(http, served.url, 5.0, fake.client_id, fake.client_secret)
                cb = f"https://clinic.example{O_HOOK}"
                out = [await oc.ensure_subscriptions(cb, O_TOKEN), await oc.ensure_subscriptions(cb, O_TOKEN)]
                fake.subscriptions[0]["expiration_time"] = (datetime.now(UTC) + timedelta(days=2)).isoformat()
                out.append(await oc.ensure_subscriptions(cb, O_TOKEN))
                with pytest.raises(VendorUnavailable):  # our gateway refuses a stranger's token
                    await oc.ensure_subscriptions("https://clinic.example/other", "not-ours", event_types=("create",))
                return out

        created, unchanged, renewed = asyncio.run(run())
    finally:
        served.stop()
    assert created == ["created create", "created update"] and unchanged == [] and renewed == ["renewed create"]
    assert len(fake.subscriptions) == 2
    assert_problem(client.get(f"{O_HOOK}?verification_token=guess&challenge=abc"), 401, "invalid-signature")

    care = make_care(db_settings)
    dev = enrol(client, care, valid_from=datetime.now(UTC) - timedelta(hours=1))
    user = "o-6002"
    body, headers = fake.delivery(user, datetime.now(UTC).date())
    assert client.post(O_HOOK, content=body, headers=headers).json()["outcome"] == "unlinked"
    # Forged: another key, an altered body, a timestamp changed after signing.
    _, forged = fake.delivery(user, datetime.now(UTC).date(), secret="not-the-client-secret")
    assert_problem(client.post(O_HOOK, content=body, headers={**headers, **{
        oura.SIGNATURE_HEADER: forged[oura.SIGNATURE_HEADER], oura.TIMESTAMP_HEADER: forged[oura.TIMESTAMP_HEADER]}}),
        401, "invalid-signature")
    assert_problem(client.post(O_HOOK, content=body.replace(b"update", b"delete"), headers=headers),
                   401, "invalid-signature")
    assert_problem(client.post(O_HOOK, content=body, headers={**headers, oura.TIMESTAMP_HEADER: "1"}),
                   401, "invalid-signature")
    # Replayed: genuinely signed but old -> refused; the same delivery twice -> processed once.
    old = str(int(time.time()) - 3 * 86_400)
    body, headers = fake.delivery(user, datetime.now(UTC).date(), timestamp=old)
    assert_problem(client.post(O_HOOK, content=body, headers=headers), 400, "stale-notification")
    connect(client, ofake.consent, "oura", dev, user, "UTC")
    wait_queue_empty(db_settings, "oura", user)
    body, headers = ofake.delivery(user, datetime.now(UTC).date())
    assert client.post(O_HOOK, content=body, headers=headers).json()["outcome"] == "queued"
    assert client.post(O_HOOK, content=body, headers=headers).json()["outcome"] == "duplicate"
    wait_queue_empty(db_settings, "oura", user)


def test_oura_rate_limit_dst_day_and_zone_change(
    vclient: TestClient, ofake: OuraFake, db_settings: Settings
) -> None:
    client = vclient
    ny, la = ZoneInfo("America/New_York"), ZoneInfo("America/Los_Angeles")
    today = datetime.now(ny).date()
    dst = _last_dst_day(ny, today)
    care = _care_since(db_settings, dst - timedelta(days=2))
    dev = enrol(client, care, valid_from=datetime.combine(dst - timedelta(days=1), datetime.min.time(), ny))
    user = "o-6003"
    ofake.set_day(user, dst - timedelta(days=1), 8000, "America/New_York")  # Oura's day across the change
    ofake.set_day(user, dst, 9000, "America/New_York")
    yday = today - timedelta(days=1)
    ofake.set_day(user, yday, 700, "America/Los_Angeles")
    _moved_yesterday(db_settings, care.patient_id, ny, yday)
    ofake.rate_budget, ofake.retry_after = 2, "1"
    try:
        connect(client, ofake.consent, "oura", dev, user, "America/New_York")
        deadline = time.monotonic() + 20
        while connection(db_settings, "oura", user)["not_before"] is None:
            assert time.monotonic() < deadline, "Oura's 429 was not honoured"
            time.sleep(0.05)
        assert "rate limited" in connection(db_settings, "oura", user)["last_error"]
        ofake.rate_budget = None
        wait_queue_empty(db_settings, "oura", user, timeout_s=180)
    finally:
        ofake.rate_budget, ofake.retry_after = None, None
    got = {e.steps: e for e in intervals(db_settings, care.patient_id, dev.device_id).values()}
    assert set(got) == {8000, 9000, 700}
    for steps, day in ((8000, dst - timedelta(days=1)), (9000, dst)):
        e = got[steps]
        assert e.start == datetime.combine(day, oura.DAY_START, ny).astimezone(UTC)
        assert e.end == datetime.combine(day + timedelta(days=1), datetime.min.time(), ny).astimezone(UTC)
    moved = got[700]  # yesterday, in Los Angeles: Oura's day and ours are Los Angeles's
    assert moved.start == datetime.combine(yday, oura.DAY_START, la).astimezone(UTC)
    assert moved.end == datetime.combine(today, datetime.min.time(), la).astimezone(UTC)


def test_a_document_breaking_the_contract_is_dropped_not_fatal() -> None:
    """More steps than Oura's day so far allows (a ring clock ahead, a vendor bug): that document
    is dropped and counted; the other days of the same answer are kept."""
    from device_adapters.cloud.documents import DROPPED
    from device_adapters.context import DeviceContext

    ctx = DeviceContext(patient_id="p-doc", episode_id="e-doc", device_id="d-doc")
    tz = ZoneInfo("Europe/Helsinki")
    now = datetime(2026, 3, 10, 4, 10, tzinfo=tz)  # ten minutes into Oura's day
    docs = [oura.DailyActivity(id="a", day=date(2026, 3, 9), steps=9000),
            oura.DailyActivity(id="b", day=date(2026, 3, 10), steps=4200)]  # 420 a minute
    before = DROPPED.labels(oura.VENDOR)._value.get()
    got = oura.day_intervals(docs, "Europe/Helsinki", ctx, now)
    assert [(i.start.astimezone(tz).date(), i.steps) for i in got] == [(date(2026, 3, 9), 9000)]
    assert DROPPED.labels(oura.VENDOR)._value.get() == before + 1
    docs[1] = oura.DailyActivity(id="b", day=date(2026, 3, 10), steps=2500)  # 250 a minute: kept
    assert [i.steps for i in oura.day_intervals(docs, "Europe/Helsinki", ctx, now)] == [9000, 2500]


def test_a_notification_that_cannot_be_processed_backs_off_then_fails(
    vclient: TestClient, db_settings: Settings
) -> None:
    """A queued notification whose processing raises something no adapter anticipated (here a
    corrupt interval in a stored Google notification) backs off with its error type recorded and
    fails for good at the attempt limit; it does not come back every lease for ever."""
    bad = {"interval": {"startTime": "not a time"}}
    with psycopg.connect(db_settings.dsn("writer"), autocommit=True) as conn:
        for nid, attempts in (("corrupt-1", 0), ("corrupt-2", 7)):  # the limit in these tests: 8
            conn.execute(
                "insert into vendor_notifications (vendor, notification_id, vendor_user_id, payload, attempts) "
                "values (%s, %s, %s, %s, %s) on conflict do nothing",
                (google_health.VENDOR, nid, f"g-{nid}", Jsonb(bad), attempts),
            )
    deadline = time.monotonic() + 30
    first = last = None
    while time.monotonic() < deadline:
        first = notification(db_settings, google_health.VENDOR, "corrupt-1")
        last = notification(db_settings, google_health.VENDOR, "corrupt-2")
        if first and last and first["last_error"] and last["status"] == "failed":
            break
        time.sleep(0.1)
    assert first is not None and last is not None
    assert first["last_error"] == "unexpected ValueError while syncing" and first["attempts"] >= 1
    assert last == {"status": "failed", "attempts": 8, "last_error": "unexpected ValueError while syncing"}
