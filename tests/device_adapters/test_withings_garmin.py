"""Withings and Garmin adapters without the stack: Withings' status-in-body answers and 24-hour
ranges, Garmin's epochs (activity types, offsets across a DST change and a move), dailies as
running totals, notification splitting, callback trust, and backfill ranges on DST days."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import httpx
import orjson
import pytest

from device_adapters.cloud import garmin, withings
from device_adapters.cloud.errors import RateLimited, VendorRejected, VendorUnavailable
from device_adapters.cloud.fakes.garmin import GarminFake
from device_adapters.cloud.fakes.server import serve
from device_adapters.context import DeviceContext

CTX = DeviceContext(patient_id="p1", episode_id="e1", device_id="dev-1")


def test_withings_status_in_body() -> None:
    assert withings.check({"status": 0, "body": {"series": []}}, "x") == {"series": []}
    with pytest.raises(VendorRejected):
        withings.check({"status": 401, "error": "invalid_token"}, "x")
    with pytest.raises(RateLimited) as limited:
        withings.check({"status": 601}, "x")
    assert limited.value.retry_after_s == 60.0
    for bad in ({"status": 2555}, {"body": {}}, [1], {"status": "0"}):
        with pytest.raises(VendorUnavailable):
            withings.check(bad, "x")


def test_withings_token_answer_rewritten() -> None:
    req = httpx.Request("POST", "https://wbsapi.example/v2/oauth2")
    ok = withings.token_response(httpx.Response(200, json={"status": 0, "body": {
        "userid": 42, "access_token": "a", "refresh_token": "r", "expires_in": 10800}}, request=req))
    assert ok.json() == {"userid": "42", "access_token": "a", "refresh_token": "r", "expires_in": 10800}
    refused = withings.token_response(httpx.Response(200, json={"status": 503, "error": "x"}, request=req))
    assert refused.json()["error"] == "invalid_grant"
    busy = withings.token_response(httpx.Response(200, json={"status": 601}, request=req))
    assert busy.json()["error"] == "temporarily_unavailable"


@pytest.mark.parametrize(("day", "hours"), [(date(2026, 3, 8), [23]), (date(2026, 11, 1), [24, 1]),
                                            (date(2026, 6, 1), [24])])
def test_withings_day_ranges_at_most_24h(day: date, hours: list[int]) -> None:
    ranges = withings.day_ranges(day, "America/New_York")
    assert [(b - a) // 3600 for a, b in ranges] == hours
    assert all(ranges[k][1] == ranges[k + 1][0] for k in range(len(ranges) - 1))


def test_withings_series_to_intervals() -> None:
    series = {"1700000060": {"steps": 5, "duration": 60}, "1700000000": {"steps": 3, "duration": 60},
              "1700000120": {"heart_rate": 70}, "1800000000": {"steps": 9}}
    got = withings.step_intervals(series, 1700000000, 1700086400, "Europe/Paris", CTX)
    assert [(int(e.start.timestamp()), e.steps, e.zone_offset_s) for e in got] == [
        (1700000000, 3, 3600), (1700000060, 5, 3600)]


def _epoch(start: int, offset: int, steps: int, kind: str, active_s: int = 0) -> dict[str, object]:
    return {"summaryId": f"{start}-{kind}", "activityType": kind, "steps": steps, "durationInSeconds": 900,
            "activeTimeInSeconds": active_s, "startTimeInSeconds": start, "startTimeOffsetInSeconds": offset}


def test_garmin_epochs_sum_activity_types_and_keep_offsets() -> None:
    # 2026-10-25 01:00 UTC: Europe/Berlin falls back from +02:00 to +01:00; then the patient flies
    # to New York (-05:00). The device's own offsets are taken as they come.
    t = int(datetime(2026, 10, 25, 0, 45, tzinfo=UTC).timestamp())
    items = [_epoch(t, 7200, 100, "WALKING", 600), _epoch(t, 7200, 12, "SEDENTARY"),
             _epoch(t + 900, 3600, 40, "WALKING", 300), _epoch(t + 86400, -18000, 7, "WALKING")]
    got = garmin.epoch_intervals(items, CTX)
    assert [(e.steps, e.zone_offset_s, e.active_minutes) for e in got] == [
        (112, 7200, 10.0), (40, 3600, 5.0), (7, -18000, 0.0)]
    assert all((e.end - e.start).total_seconds() == 900 for e in got)


def test_garmin_dailies_are_running_totals() -> None:
    day = {"calendarDate": "2026-10-25", "startTimeInSeconds": 1792879200, "startTimeOffsetInSeconds": 7200,
           "durationInSeconds": 90000}
    morning = garmin.daily_intervals([{**day, "steps": 1200}], CTX)
    evening = garmin.daily_intervals([{**day, "steps": 1200}, {**day, "steps": 8400}], CTX)
    assert [e.steps for e in evening] == [8400]  # the latest total of the date, not a sum
    assert morning[0].id == evening[0].id  # same event: the later total overwrites the earlier
    assert (evening[0].end - evening[0].start).total_seconds() == 86400  # a 25-hour day folded into 24


def test_garmin_split_and_trust() -> None:
    base = "https://apis.garmin.com"
    body = {"epochs": [
        {"userId": "u1", "callbackURL": f"{base}/wellness-api/rest/epochs?uploadStartTimeInSeconds=1",
         "uploadEndTimeInSeconds": 5},
        _epoch(0, 0, 1, "WALKING") | {"userId": "u2"}, _epoch(900, 0, 2, "WALKING") | {"userId": "u2"},
        {"no": "user"}],
        "sleeps": [{"userId": "u1"}]}
    parts = garmin.split_notification(body)
    assert [(u, p["kind"], len(p.get("items", []))) for u, _, p in parts] == [("u1", "ping", 0), ("u2", "push", 2)]
    assert parts == garmin.split_notification(orjson.loads(orjson.dumps(body)))  # stable ids
    assert garmin.trusted_callback(f"{base}/wellness-api/rest/epochs?x=1", base)
    assert not garmin.trusted_callback("https://apis.garmin.com.evil.example/wellness-api/rest/epochs", base)
    assert not garmin.trusted_callback(f"{base}/other", base)
    assert not garmin.trusted_callback("http://apis.garmin.com/wellness-api/rest/epochs", base)


def test_garmin_backfills_whole_local_days_once_and_never_today() -> None:
    fake = GarminFake()
    served = serve(fake.app())
    fake.base_url = served.url
    try:
        client = garmin.GarminClient(httpx.AsyncClient(), served.url, 5.0)
        adapter = garmin.GarminAdapter(client, None, "epochs")
        token = {"access_token": "t"}
        fake.tokens["t"] = ("u1", 4e9)

        async def run() -> None:
            await adapter.fetch_day(token, date(2026, 11, 1), "America/Chicago", CTX, complete=True)
            await adapter.fetch_day(token, date(2026, 11, 1), "America/Chicago", CTX, complete=True)  # 409
            await adapter.fetch_day(token, date(2026, 11, 2), "America/Chicago", CTX, complete=False)
            assert await client.backfill("t", "epochs", 1, 2) == "requested"
            assert await client.backfill("t", "epochs", 1, 2) == "requested before"

        asyncio.run(run())
    finally:
        served.stop()
    (summary, a, b), _ = fake.backfills["u1"]
    assert summary == "epochs" and b - a == 25 * 3600  # the fall-back day, local midnight to midnight
    assert datetime.fromtimestamp(a, UTC) == datetime(2026, 11, 1, 5, tzinfo=UTC)
