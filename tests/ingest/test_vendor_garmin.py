"""Garmin Health API connections end to end through the gateway and the Garmin fake (over HTTP):
OAuth 2.0 with PKCE, first sync as backfill requests of complete days only (data arriving by
ping), incremental pings and pushes, the single-use time ranges (409), running totals, forged and
replayed notifications, token refresh with rotation, revocation and 429 with Retry-After."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient

from device_adapters.cloud.fakes.garmin import GarminFake
from device_adapters.cloud.fakes.polar import PolarFake
from device_adapters.cloud.fakes.withings import WithingsFake
from rtm.settings import Settings
from tests.ingest.conftest import enrol, make_care
from tests.ingest.test_upload import assert_problem
from tests.ingest.vendor_helpers import connection, intervals, wait_queue_empty
from tests.ingest.vendor_wg import GARMIN_SECRET, connect, forget_connections, garmin_fake, wg_client, withings_fake

pytestmark = pytest.mark.integration
HOOK = f"/v1/webhooks/garmin/{GARMIN_SECRET}"
__all__ = ["garmin_fake", "withings_fake"]


@pytest.fixture(scope="module")
def gclient(db_settings: Settings, polar_fake: PolarFake, withings_fake: WithingsFake,
            garmin_fake: GarminFake) -> Iterator[TestClient]:
    with wg_client(db_settings, polar_fake, withings_fake, garmin_fake,
                   user_rate_per_s=1000.0, user_burst=1000) as c:
        yield c
    forget_connections(db_settings)


def epoch(user: str, start: int, offset: int, steps: int, kind: str = "WALKING") -> dict[str, Any]:
    return {"summaryId": f"{user}-{start}-{kind}", "activityType": kind, "steps": steps,
            "durationInSeconds": 900, "activeTimeInSeconds": 600 if kind != "SEDENTARY" else 0,
            "startTimeInSeconds": start, "startTimeOffsetInSeconds": offset, "intensity": "ACTIVE"}


def until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def window(d: date, hour: int, tz: ZoneInfo) -> tuple[int, int]:
    t = datetime.combine(d, datetime.min.time(), tz).replace(hour=hour)
    off = t.utcoffset()
    return int(t.timestamp()), int(off.total_seconds()) if off else 0


def test_connect_backfill_pings_pushes_running_totals_refresh_and_revocation(
    gclient: TestClient, garmin_fake: GarminFake, db_settings: Settings
) -> None:
    client, fake = gclient, garmin_fake
    tz = ZoneInfo("Europe/Berlin")
    care = make_care(db_settings)
    dev = enrol(client, care, valid_from=datetime.now(UTC) - timedelta(days=3))
    user = f"g-{care.patient_id}"
    today = datetime.now(tz).date()
    d2 = today - timedelta(days=2)
    # Synced to Garmin before the clinic connected (no notification reached us).
    t, off = window(d2, 10, tz)
    fake.upload(user, "epochs", [epoch(user, t, off, 400), epoch(user, t, off, 30, "SEDENTARY")])
    fake.token_lifetime_s = 60  # inside the refresh margin: every sync refreshes (refresh tokens rotate)
    try:
        connect(client, "garmin", lambda url, u: fake.consent(url, u), dev, user, "Europe/Berlin")
        # First sync: one backfill request per complete local day since enrolment; never today.
        first = (datetime.now(UTC) - timedelta(days=3)).astimezone(tz).date()
        want = [(int(datetime.combine(first + timedelta(days=k), datetime.min.time(), tz).timestamp()),
                 int(datetime.combine(first + timedelta(days=k + 1), datetime.min.time(), tz).timestamp()))
                for k in range((today - first).days)]
        until(lambda: sorted((a, b) for _, a, b in fake.backfills.get(user, [])) == want, "backfill requests")
        # Garmin answers 202 and pings the backfilled summaries; the gateway pulls them.
        until(lambda: [e.steps for e in intervals(db_settings, care.patient_id, dev.device_id).values()] == [430],
              "backfilled epochs")
        wait_queue_empty(db_settings, "garmin", user)
        row = connection(db_settings, "garmin", user)
        assert row["status"] == "active" and row["synced_through"] == today - timedelta(days=1)

        # Incremental: the watch syncs today's window; Garmin pings; the pull is stored with the
        # queued notification before acceptance (its range cannot be pulled twice).
        refreshes = fake.refreshes
        t = int(time.time()) - 1800
        t -= t % 900  # a complete window (the gateway skips intervals that end in the future)
        off = int(datetime.fromtimestamp(t, tz).utcoffset().total_seconds())  # type: ignore[union-attr]
        at = fake.upload(user, "epochs", [epoch(user, t, off, 120)])
        assert fake.notify(user, "epochs", at) == 200
        wait_queue_empty(db_settings, "garmin", user)
        assert fake.refreshes > refreshes
        todays = [e for e in intervals(db_settings, care.patient_id, dev.device_id).values()
                  if e.start == datetime.fromtimestamp(t, UTC)]
        assert [(e.steps, e.zone_offset_s, (e.end - e.start).total_seconds()) for e in todays] == [(120, off, 900.0)]
        with psycopg.connect(db_settings.dsn("owner"), autocommit=True) as conn:
            stored = conn.execute(
                "select payload from vendor_notifications where vendor = 'garmin' and vendor_user_id = %s "
                "and payload->>'kind' = 'ping' order by received_at desc limit 1", (user,)).fetchone()
        assert stored is not None and [i["steps"] for i in stored[0]["items"]] == [120]

        # Running totals: the same window uploaded again, grown; pushed this time. It replaces.
        fake.mode = "push"
        at = fake.upload(user, "epochs", [epoch(user, t, off, 260), epoch(user, t, off, 5, "SEDENTARY")])
        assert fake.notify(user, "epochs", at) == 200
        wait_queue_empty(db_settings, "garmin", user)
        got = intervals(db_settings, care.patient_id, dev.device_id)
        assert sorted(e.steps for e in got.values()) == [265, 430]
        # The same push again (Garmin redelivers): a duplicate, nothing added.
        body = orjson.dumps({"epochs": [u.item for u in fake.uploads if u.at == at]})
        assert client.post(HOOK, content=body, headers={"Content-Type": "application/json"}).json()["outcomes"] == \
            ["duplicate"]
    finally:
        fake.mode = "ping"
        fake.token_lifetime_s = 86_400

    # Reconnecting re-syncs: the backfill ranges were spent (409), which is not an error.
    connect(client, "garmin", lambda url, u: fake.consent(url, u), dev, user, "Europe/Berlin")
    wait_queue_empty(db_settings, "garmin", user)
    row = connection(db_settings, "garmin", user)
    assert row["status"] == "active" and row["last_error"] is None

    # Revocation: the pull is refused; the connection is marked, not retried.
    fake.revoke(user)
    t2 = t + 900
    at = fake.upload(user, "epochs", [epoch(user, t2, off, 9)])
    assert fake.notify(user, "epochs", at) == 200
    wait_queue_empty(db_settings, "garmin", user)
    row = connection(db_settings, "garmin", user)
    assert row["status"] == "reauthorization_required" and "refused" in row["last_error"]


def test_forged_stale_and_foreign_notifications(
    gclient: TestClient, garmin_fake: GarminFake, db_settings: Settings
) -> None:
    client, fake = gclient, garmin_fake
    now = int(time.time())
    ping = {"epochs": [fake.ping_entry("nobody", "epochs", now - 10, now)]}
    headers = {"Content-Type": "application/json"}
    # Without the endpoint's secret: refused.
    assert_problem(client.post("/v1/webhooks/garmin/guess", content=orjson.dumps(ping), headers=headers),
                   401, "invalid-signature")
    # A ping whose callback is not Garmin's API would send a user's token elsewhere: refused.
    evil = {"epochs": [{**ping["epochs"][0], "callbackURL": "https://evil.example/wellness-api/rest/epochs"}]}
    assert_problem(client.post(HOOK, content=orjson.dumps(evil), headers=headers), 400, "malformed-body")
    # Stale (a replay from outside the window) and unknown users are acknowledged, not queued.
    old = {"epochs": [fake.ping_entry("nobody", "epochs", now - 3 * 86400, now - 3 * 86400 + 5)]}
    assert client.post(HOOK, content=orjson.dumps(old), headers=headers).json()["outcomes"] == ["stale"]
    assert client.post(HOOK, content=orjson.dumps(ping), headers=headers).json()["outcomes"] == ["unlinked"]
    assert_problem(client.post(HOOK, content=b"[1]", headers=headers), 400, "malformed-body")


def test_429_retry_after(gclient: TestClient, garmin_fake: GarminFake, db_settings: Settings) -> None:
    client, fake = gclient, garmin_fake
    care = make_care(db_settings)
    dev = enrol(client, care, valid_from=datetime.now(UTC) - timedelta(hours=1))
    user = f"g-{care.patient_id}"
    connect(client, "garmin", lambda url, u: fake.consent(url, u), dev, user, "Asia/Tokyo")
    wait_queue_empty(db_settings, "garmin", user)
    t = int(time.time()) - 1800
    t -= t % 900
    off = 9 * 3600
    at = fake.upload(user, "epochs", [epoch(user, t, off, 77)])
    fake.rate_budget, fake.retry_after_s = 0, 1
    try:
        assert fake.notify(user, "epochs", at) == 200
        until(lambda: connection(db_settings, "garmin", user)["not_before"] is not None, "429 not honoured")
        assert "rate limited for 1 s" in connection(db_settings, "garmin", user)["last_error"]
        fake.rate_budget = None
        wait_queue_empty(db_settings, "garmin", user)
    finally:
        fake.rate_budget = None
    got = intervals(db_settings, care.patient_id, dev.device_id)
    assert [e.steps for e in got.values()] == [77]
    assert connection(db_settings, "garmin", user)["last_error"] is None
