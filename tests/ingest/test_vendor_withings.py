"""Withings connections end to end through the gateway and the Withings fake (over HTTP): OAuth
with Withings' token answer, first sync and backfill in <= 24 h ranges, incremental sync from an
unsigned notification (re-fetched, never trusted), replays, running totals, token refresh with
rotating refresh tokens, revocation, status-601 rate limiting, a DST day and a time-zone change."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

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
from tests.ingest.vendor_wg import connect, forget_connections, garmin_fake, wg_client, withings_fake

pytestmark = pytest.mark.integration
HOOK = "/v1/webhooks/withings"
__all__ = ["garmin_fake", "withings_fake"]


@pytest.fixture(scope="module")
def wclient(db_settings: Settings, polar_fake: PolarFake, withings_fake: WithingsFake,
            garmin_fake: GarminFake) -> Iterator[TestClient]:
    with wg_client(db_settings, polar_fake, withings_fake, garmin_fake,
                   backfill_days=400, user_rate_per_s=1000.0, user_burst=1000) as c:
        yield c
    forget_connections(db_settings)


def local_ts(d: date, hour: int, minute: int, tz: ZoneInfo) -> int:
    return int(datetime.combine(d, datetime.min.time(), tz).replace(hour=hour, minute=minute).timestamp())


def test_connect_backfill_notification_running_totals_refresh_and_revocation(
    wclient: TestClient, withings_fake: WithingsFake, db_settings: Settings
) -> None:
    client, fake = wclient, withings_fake
    tz = ZoneInfo("America/Chicago")
    care = make_care(db_settings)
    dev = enrol(client, care, valid_from=datetime.now(UTC) - timedelta(days=3))
    user = 8101
    today = datetime.now(tz).date()
    d2 = today - timedelta(days=2)
    fake.add_steps(user, {local_ts(d2, 9, 0, tz): 10, local_ts(d2, 9, 1, tz): 20})
    fake.token_lifetime_s = 60  # inside the refresh margin: every sync refreshes (and rotates)
    fake.data_calls.clear()
    try:
        connect(client, "withings", fake.consent, dev, user, "America/Chicago")
        wait_queue_empty(db_settings, "withings", str(user))
        assert fake.subscriptions[user] == {"http://testserver/v1/webhooks/withings"}
        calls = [(a, b) for u, a, b in fake.data_calls if u == user]
        assert calls and all(0 < b - a <= 24 * 3600 for a, b in calls)
        first = (datetime.now(UTC) - timedelta(days=3)).astimezone(tz).date()
        assert min(a for a, _ in calls) == local_ts(first, 0, 0, tz)  # from the enrolment's local day
        row = connection(db_settings, "withings", str(user))
        assert row["status"] == "active" and row["synced_through"] == today - timedelta(days=1)
        got = intervals(db_settings, care.patient_id, dev.device_id)
        assert sorted(e.steps for e in got.values()) == [10, 20]

        # Incremental: a notification names today's range; only today is fetched.
        fake.data_calls.clear()
        t0 = local_ts(today, 0, 5, tz)
        fake.add_steps(user, {t0: 33})
        refreshes = fake.refreshes
        assert fake.notify(user, t0, t0 + 60) == [200]
        wait_queue_empty(db_settings, "withings", str(user))
        assert fake.refreshes > refreshes  # the rotated refresh token was stored and worked again
        assert {a for u, a, _ in fake.data_calls if u == user} == {local_ts(today, 0, 0, tz)}
        # A replay of the same notification is a duplicate; an unknown user's is acknowledged.
        body, headers = fake.notification(user, t0, t0 + 60)
        assert client.post(HOOK, content=body, headers=headers).json()["outcome"] == "duplicate"
        body, headers = fake.notification(999_999, t0, t0 + 60)
        assert client.post(HOOK, content=body, headers=headers).json()["outcome"] == "unlinked"
        assert_problem(client.post(HOOK, content=b"userid=x&appli=16", headers=headers), 400, "malformed-body")
        # A forged notification for a connected user claims data Withings does not hold: it only
        # makes the gateway fetch what Withings holds.
        body, headers = fake.notification(user, t0 - 7, t0 + 3600)
        assert client.post(HOOK, content=body, headers=headers).json()["outcome"] == "queued"
        wait_queue_empty(db_settings, "withings", str(user))
        got = intervals(db_settings, care.patient_id, dev.device_id)
        assert sorted(e.steps for e in got.values()) == [10, 20, 33]

        # Running totals: Withings updates the sample as the device syncs; it replaces.
        fake.add_steps(user, {t0: 58})
        assert fake.notify(user, t0, t0 + 61) == [200]
        wait_queue_empty(db_settings, "withings", str(user))
        got = intervals(db_settings, care.patient_id, dev.device_id)
        assert sorted(e.steps for e in got.values()) == [10, 20, 58]

        # Revocation: the patient unlinks the app; its refresh token is refused (status 503 in a 200).
        fake.revoke(user)
        calls = fake.calls
        assert fake.notify(user, t0, t0 + 62) == [200]
        wait_queue_empty(db_settings, "withings", str(user))
        row = connection(db_settings, "withings", str(user))
        assert row["status"] == "reauthorization_required" and "invalid_grant" in row["last_error"]
        assert fake.calls == calls  # no data call with a dead grant
        body, headers = fake.notification(user, t0, t0 + 63)
        assert client.post(HOOK, content=body, headers=headers).json()["outcome"] == \
            "connection-reauthorization-required"
    finally:
        fake.token_lifetime_s = 10_800


def test_status_601_rate_limit(wclient: TestClient, withings_fake: WithingsFake, db_settings: Settings) -> None:
    client, fake = wclient, withings_fake
    tz = ZoneInfo("Europe/Paris")
    care = make_care(db_settings)
    dev = enrol(client, care, valid_from=datetime.now(UTC) - timedelta(days=4))
    user = 8102
    d = datetime.now(tz).date() - timedelta(days=1)
    fake.add_steps(user, {local_ts(d, 12, 0, tz): 42})
    fake.rate_budget = 1  # Withings answers status 601 (in an HTTP 200) after one call
    try:
        connect(client, "withings", fake.consent, dev, user, "Europe/Paris")
        deadline = time.monotonic() + 20
        while connection(db_settings, "withings", str(user))["not_before"] is None:
            assert time.monotonic() < deadline, "status 601 was not honoured"
            time.sleep(0.05)
        row = connection(db_settings, "withings", str(user))
        assert "rate limited" in row["last_error"] and row["status"] == "active"
        # Withings gives no reset time: the wait is its one-minute window.
        wait = (row["not_before"] - datetime.now(UTC)).total_seconds()
        assert 30 < wait <= 60
        calls = fake.calls
        time.sleep(1.0)
        assert fake.calls == calls  # nothing asked while the window runs
    finally:
        fake.rate_budget = None
    with psycopg.connect(db_settings.dsn("owner"), autocommit=True) as conn:  # the minute has passed
        conn.execute("update vendor_connections set not_before = now() where vendor = 'withings' "
                     "and vendor_user_id = %s", (str(user),))
        conn.execute("update vendor_notifications set next_attempt_at = now() where vendor = 'withings' "
                     "and vendor_user_id = %s and status = 'pending'", (str(user),))
    wait_queue_empty(db_settings, "withings", str(user))
    row = connection(db_settings, "withings", str(user))
    assert row["last_error"] is None and row["synced_through"] == datetime.now(tz).date() - timedelta(days=1)
    assert sum(e.steps for e in intervals(db_settings, care.patient_id, dev.device_id).values()) == 42
    # A revoked grant with a still-valid access token: the data call answers status 401 in a 200.
    fake.revoke(user)
    t = local_ts(datetime.now(tz).date(), 0, 0, tz)
    assert fake.notify(user, t, t + 60) == [200]
    wait_queue_empty(db_settings, "withings", str(user))
    row = connection(db_settings, "withings", str(user))
    assert row["status"] == "reauthorization_required" and "status 401" in row["last_error"]


def _last_dst_day(tz: ZoneInfo, before: date) -> date:
    d = before - timedelta(days=1)
    while datetime.combine(d, datetime.min.time(), tz).utcoffset() == datetime.combine(
        d + timedelta(days=1), datetime.min.time(), tz
    ).utcoffset():
        d -= timedelta(days=1)
    return d


def test_dst_day_and_time_zone_change(wclient: TestClient, withings_fake: WithingsFake,
                                      db_settings: Settings) -> None:
    client, fake = wclient, withings_fake
    ny, la = ZoneInfo("America/New_York"), ZoneInfo("America/Los_Angeles")
    today = datetime.now(ny).date()
    dst = _last_dst_day(ny, today)
    care = make_care(db_settings)
    with psycopg.connect(db_settings.dsn("owner"), autocommit=True) as conn:
        conn.execute("update episodes set start_date = %s where episode_id = %s",
                     (dst - timedelta(days=2), care.episode_id))
    dev = enrol(client, care, valid_from=datetime.combine(dst - timedelta(days=1), datetime.min.time(), ny))
    user = 8103
    start = int(datetime.combine(dst, datetime.min.time(), ny).timestamp())
    end = int(datetime.combine(dst + timedelta(days=1), datetime.min.time(), ny).timestamp())
    hours = (end - start) // 3600
    assert hours in (23, 25)
    fake.add_steps(user, {start + 3600 * k: 100 + k for k in range(hours)}, duration_s=3600)
    # The patient moved to Los Angeles yesterday: yesterday's local day is Los Angeles'.
    yday = today - timedelta(days=1)
    late = local_ts(yday, 22, 30, la)  # 01:30 the next day in New York
    fake.add_steps(user, {late: 7})
    moved = datetime.combine(yday, datetime.min.time(), ny)
    with psycopg.connect(db_settings.dsn("owner"), autocommit=True) as conn:
        conn.execute(
            "insert into patient_timezones (patient_id, effective_from, tz) values (%s, %s, %s), (%s, %s, %s)",
            (care.patient_id, moved - timedelta(days=400), "America/New_York", care.patient_id, moved,
             "America/Los_Angeles"),
        )
    fake.data_calls.clear()
    connect(client, "withings", fake.consent, dev, user, "America/New_York")
    wait_queue_empty(db_settings, "withings", str(user), timeout_s=120)
    # A 25-hour day is asked for in two ranges (Withings returns at most 24 h per call).
    on_day = sorted((a, b) for u, a, b in fake.data_calls if u == user and start <= a < end)
    assert [b - a for a, b in on_day] == ([24 * 3600, 3600] if hours == 25 else [23 * 3600])
    got = sorted(intervals(db_settings, care.patient_id, dev.device_id).values(), key=lambda e: e.start)
    on_dst = [e for e in got if e.start.astimezone(ny).date() == dst]
    assert [e.steps for e in on_dst] == [100 + k for k in range(hours)]
    assert len({e.zone_offset_s for e in on_dst}) == 2
    moved_events = [e for e in got if e.steps == 7]
    assert len(moved_events) == 1
    offset = moved_events[0].start.astimezone(la).utcoffset()
    assert offset is not None and moved_events[0].zone_offset_s == int(offset.total_seconds())
