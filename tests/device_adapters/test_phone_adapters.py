"""Health Connect and HealthKit record mapping (no stack needed)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from device_adapters.context import DeviceContext
from device_adapters.phone import health_connect as hc
from device_adapters.phone import healthkit as hk
from device_adapters.phone.zone import parse_offset

CTX = DeviceContext(patient_id="p1", episode_id="e1", device_id="phone-1")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("Z", 0),
        ("+02:00", 7200),
        ("-05:30", -19800),
        ("+0545", 20700),
        (3600, 3600),
        (None, None),
        ("+01:00:30", 3630),
    ],
)
def test_zone_offsets(text: object, seconds: int | None) -> None:
    assert parse_offset(text) == seconds


@pytest.mark.parametrize("bad", ["+19:00", "CET", "2", True, 1.5, 99999])
def test_bad_zone_offsets(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_offset(bad)


def test_health_connect_record_maps_interval_offset_and_id() -> None:
    rec = hc.StepsRecord.model_validate(
        {
            "startTime": "2026-03-29T00:30:00Z",
            "startZoneOffset": "+01:00",
            "endTime": "2026-03-29T01:30:00Z",
            "endZoneOffset": "+02:00",
            "count": 4200,
            "metadata": {"id": "a1b2", "dataOrigin": {"packageName": "com.example"}, "future": 1},
        }
    )
    ev = hc.to_interval(rec, CTX)
    assert (ev.start, ev.end, ev.steps, ev.zone_offset_s) == (
        datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        4200,
        3600,
    )
    assert ev.source == "health_connect" and ev.source_record_id == "a1b2"
    assert ev.id == hc.deletion_event_id("a1b2", CTX)
    assert hc.to_deletion("a1b2", ev.start, ev.end, CTX).id == ev.id


@pytest.mark.parametrize("count", [0, 1_000_001, "12", 1.5])
def test_health_connect_count_range_and_type(count: object) -> None:
    with pytest.raises(ValidationError):
        hc.StepsRecord.model_validate(
            {
                "startTime": "2026-01-01T00:00:00Z",
                "endTime": "2026-01-01T00:01:00Z",
                "count": count,
                "metadata": {"id": "x"},
            }
        )


def test_healthkit_sample_zone_rounding_and_deletion_id() -> None:
    u = uuid.uuid4()
    s = hk.HkStepSample.model_validate(
        {
            "uuid": str(u).upper(),
            "startDate": "2026-07-01T12:00:00Z",
            "endDate": "2026-07-01T12:10:00Z",
            "quantity": 57.5,
            "metadata": {"HKTimeZone": "Australia/Adelaide"},
            "sourceRevision": {"source": {"bundleIdentifier": "com.apple.health"}},
        }
    )
    ev = hk.to_interval(s, CTX)
    assert ev.steps == 58 and ev.zone_offset_s == 34200 and ev.source_record_id == str(u)
    assert hk.deletion_event_id(u, CTX) == ev.id
    assert hk.to_deletion(u, ev.start, ev.end, CTX).deleted


def test_healthkit_rejects_other_types_and_non_finite() -> None:
    base = {
        "uuid": str(uuid.uuid4()),
        "startDate": "2026-07-01T12:00:00Z",
        "endDate": "2026-07-01T12:10:00Z",
        "quantity": 5,
    }
    with pytest.raises(ValidationError):
        hk.HkStepSample.model_validate({**base, "quantityType": "HKQuantityTypeIdentifierHeartRate"})
    with pytest.raises(ValidationError):
        hk.HkStepSample.model_validate({**base, "quantity": float("inf")})
    assert (
        hk.HkStepSample.model_validate({**base, "metadata": {"HKTimeZone": "Mars/Olympus"}}).zone_offset_s()
        is None
    )
