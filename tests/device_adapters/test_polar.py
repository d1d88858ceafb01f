"""Polar AccessLink adapter: signatures, payloads, and step samples to intervals (no stack)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from device_adapters.cloud import polar
from device_adapters.cloud.errors import RateLimited, VendorRejected, VendorUnavailable
from device_adapters.cloud.fakes.polar import PolarFake
from device_adapters.context import DeviceContext

CTX = DeviceContext(patient_id="p1", episode_id="e1", device_id="polar-1")


def test_signature() -> None:
    body = b'{"event":"PING","timestamp":"2018-05-15T14:22:24Z"}'
    sig = polar.sign(b"k", body)
    assert len(sig) == 64 and polar.verify_signature(b"k", body, sig)
    assert polar.verify_signature(b"k", body, sig.upper())
    assert not polar.verify_signature(b"k", body + b" ", sig)
    assert not polar.verify_signature(b"other", body, sig)
    assert not polar.verify_signature(b"k", body, None)


def test_repeats_restored_and_local_time_converted_across_dst() -> None:
    # 2026-03-29: Europe/Helsinki moves from +02:00 to +03:00 at 03:00 local.
    day = polar.ActivityDayWithSamples.model_validate(
        {
            "date": "2026-03-29",
            "steps": {
                "interval_ms": 3_600_000,
                "total_steps": 30,
                "samples": [
                    {"steps": 5, "timestamp": "2026-03-29T01:00"},
                    {"steps": 0, "timestamp": "2026-03-29T04:00"},
                    {"steps": 10, "timestamp": "2026-03-29T05:00"},
                ],
            },
        }
    )
    out = polar.step_intervals(day, "Europe/Helsinki", CTX)
    assert [e.steps for e in out] == [5, 5, 0, 10]  # 01:00-04:00 local is two hours that night
    assert out[0].start == datetime(2026, 3, 28, 23, 0, tzinfo=UTC) and out[0].zone_offset_s == 7200
    assert out[-1].zone_offset_s == 10800
    assert all(e.end - e.start == timedelta(hours=1) and e.source == "vendor_cloud" for e in out)
    assert len({e.id for e in out}) == len(out)
    assert (
        polar.step_intervals(polar.ActivityDayWithSamples.model_validate({"date": "2026-03-29"}), "UTC", CTX)
        == []
    )


def test_client_against_the_stand_in() -> None:
    fake = PolarFake(webhook_secret=b"s", tokens={"t": 7}, registered={7})
    fake.add_day(7, "2026-05-01", [("2026-05-01T10:00", 3), ("2026-05-01T10:01", 3), ("2026-05-01T10:02", 9)])

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app())) as http:
            client = polar.PolarClient(http, "http://polar.test", 2.0)
            day = await client.activity_samples("t", datetime(2026, 5, 1).date())
            assert day is not None and day.steps is not None
            assert [s.steps for s in day.steps.samples] == [3, 9]  # the repeat was filtered out
            assert await client.activity_samples("t", datetime(2026, 5, 2).date()) is None
            with pytest.raises(VendorRejected):
                await client.activity_samples("wrong", datetime(2026, 5, 1).date())
            fake.fail_next = 1
            with pytest.raises(VendorUnavailable):
                await client.activity_samples("t", datetime(2026, 5, 1).date())

    asyncio.run(run())


def test_complete_day_repeats_last_value_to_local_midnight() -> None:
    # 2026-10-25: Europe/Helsinki falls back at 04:00 local: the day is 25 hours long.
    day = polar.ActivityDayWithSamples.model_validate(
        {"date": "2026-10-25", "steps": {"interval_ms": 3_600_000,
                                         "samples": [{"steps": 7, "timestamp": "2026-10-25T00:00"},
                                                     {"steps": 0, "timestamp": "2026-10-25T20:00"}]}}
    )
    full = polar.step_intervals(day, "Europe/Helsinki", CTX, complete=True)
    assert len(full) == 25 and sum(e.steps for e in full) == 7 * 21  # 00:00-20:00 local is 21 hours
    assert full[-1].end == datetime(2026, 10, 25, 22, 0, tzinfo=UTC)  # local midnight, +02:00
    partial = polar.step_intervals(day, "Europe/Helsinki", CTX, complete=False)
    assert len(partial) == 22  # today: the last value covers one slot only


def test_rate_limit_headers_read() -> None:
    fake = PolarFake(tokens={"t": 7}, registered={7}, rate_budget=0, rate_reset_s=321)

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app())) as http:
            client = polar.PolarClient(http, "http://polar.test", 2.0)
            with pytest.raises(RateLimited) as err:
                await client.activity_samples("t", datetime(2026, 5, 1).date())
            assert err.value.retry_after_s == 321

    asyncio.run(run())


def test_repeated_hour_when_clocks_fall_back() -> None:
    # 2026-11-01, America/New_York: 01:00-02:00 local happens twice (EDT, then EST).
    walls = ["00:30", "01:00", "01:30", "01:00", "01:30", "02:00"]
    day = polar.ActivityDayWithSamples.model_validate(
        {"date": "2026-11-01", "steps": {"interval_ms": 1_800_000, "samples": [
            {"steps": k + 1, "timestamp": f"2026-11-01T{w}"} for k, w in enumerate(walls)]}}
    )
    out = polar.step_intervals(day, "America/New_York", CTX)
    assert [e.steps for e in out] == [1, 2, 3, 4, 5, 6]
    assert [e.start.strftime("%H:%M") for e in out] == ["04:30", "05:00", "05:30", "06:00", "06:30", "07:00"]
    assert [e.zone_offset_s for e in out] == [-14400] * 3 + [-18000] * 3
