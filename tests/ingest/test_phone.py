"""Phone health-data uploads (Health Connect, HealthKit) through the gateway, with deletions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rtm.contract import ActivityInterval, decode
from rtm.settings import Settings
from rtm.topics import RAW_ACTIVITY
from tests.ingest.conftest import Device, read_topic
from tests.ingest.test_upload import assert_problem

pytestmark = pytest.mark.integration


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def hc_record(rid: str, hours_ago: float, count: int, offset: Any = "+02:00") -> dict[str, Any]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours_ago)
    return {
        "startTime": _iso(start),
        "startZoneOffset": offset,
        "endTime": _iso(start + timedelta(minutes=15)),
        "endZoneOffset": offset,
        "count": count,
        "metadata": {
            "id": rid,
            "dataOrigin": {"packageName": "com.google.android.apps.fitness"},
            "lastModifiedTime": _iso(start + timedelta(minutes=16)),
            "recordingMethod": 2,
            "device": {"manufacturer": "Google", "model": "Pixel 8", "type": 2},
        },
    }


def _intervals(settings: Settings, dev: Device) -> list[ActivityInterval]:
    out = []
    for v in read_topic(settings, RAW_ACTIVITY.name, dev.care.patient_id.encode()):
        e = decode(v)
        if isinstance(e, ActivityInterval) and e.provenance.device_id == dev.device_id:
            out.append(e)
    return out


def test_health_connect_records_edits_and_deletions(
    client: TestClient, device: Device, db_settings: Settings
) -> None:
    url = "/v1/phone/health-connect/steps"
    recs = [hc_record("hc-1", 5, 800), hc_record("hc-2", 4, 1200, 19800)]
    r = client.post(url, json={"records": recs}, headers=device.headers)
    assert r.status_code == 202, r.text
    assert [x["pointer"] for x in r.json()["results"]] == ["/records/0", "/records/1"]
    assert client.post(url, json={"records": recs}, headers=device.headers).json()["duplicates"] == 2
    edited = {**recs[0], "count": 900}
    assert client.post(url, json={"records": [edited]}, headers=device.headers).json()["accepted"] == 1
    r = client.post(url, json={"deletedRecordIds": ["hc-2", "never-seen"]}, headers=device.headers)
    assert r.status_code == 202, r.text
    statuses = {x["pointer"]: x["status"] for x in r.json()["results"]}
    assert statuses == {"/deletedRecordIds/0": "accepted", "/deletedRecordIds/1": "unknown-record"}
    events = _intervals(db_settings, device)
    by_record: dict[str | None, list[ActivityInterval]] = {}
    for e in events:
        by_record.setdefault(e.source_record_id, []).append(e)
    assert [e.steps for e in by_record["hc-1"]] == [800, 900]
    assert by_record["hc-1"][0].zone_offset_s == 7200 and by_record["hc-1"][0].source == "health_connect"
    assert by_record["hc-2"][0].zone_offset_s == 19800
    deletion = by_record["hc-2"][-1]
    assert (
        deletion.deleted
        and deletion.start == by_record["hc-2"][0].start
        and deletion.id == by_record["hc-2"][0].id
    )


def test_health_connect_bad_record_by_pointer(client: TestClient, device: Device) -> None:
    recs = [
        hc_record("hc-a", 3, 10),
        hc_record("hc-b", 3, 0),
        hc_record("hc-c", 3, 10, "+25:00"),
        {**hc_record("hc-d", 3, 10), "startTime": "yesterday"},
        hc_record("hc-e", -3, 10),
    ]
    r = client.post("/v1/phone/health-connect/steps", json={"records": recs}, headers=device.headers)
    problem = assert_problem(r, 422, "invalid-events")
    assert {e["pointer"]: e["code"] for e in problem["errors"]} == {
        "/records/1": "invalid",
        "/records/2": "invalid",
        "/records/3": "invalid",
        "/records/4": "future-timestamp",
    }


def test_healthkit_samples_and_deleted_objects(
    client: TestClient, device: Device, db_settings: Settings
) -> None:
    url = "/v1/phone/healthkit/steps"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    u1, u2 = uuid.uuid4(), uuid.uuid4()

    def sample(u: uuid.UUID, minutes: int, qty: float) -> dict[str, Any]:
        s = start + timedelta(minutes=minutes)
        return {
            "uuid": str(u).upper(),
            "quantityType": "HKQuantityTypeIdentifierStepCount",
            "startDate": _iso(s),
            "endDate": _iso(s + timedelta(minutes=10)),
            "quantity": qty,
            "unit": "count",
            "sourceRevision": {
                "source": {"name": "iPhone", "bundleIdentifier": "com.apple.health.1234"},
                "version": "17.4",
                "productType": "iPhone15,2",
            },
            "device": {"name": "iPhone", "manufacturer": "Apple Inc.", "model": "iPhone"},
            "metadata": {"HKTimeZone": "America/New_York"},
        }

    r = client.post(
        url, json={"samples": [sample(u1, 0, 412.0), sample(u2, 20, 97.6)]}, headers=device.headers
    )
    assert r.status_code == 202, r.text
    r = client.post(
        url, json={"deletedObjects": [{"uuid": str(u1)}, {"uuid": str(uuid.uuid4())}]}, headers=device.headers
    )
    assert [x["status"] for x in r.json()["results"]] == ["accepted", "unknown-record"]
    bad = client.post(
        url,
        json={
            "samples": [sample(u2, 20, 10), {**sample(u1, 0, 5), "quantity": -1}],
            "deletedObjects": [{"uuid": "not-a-uuid"}],
        },
        headers=device.headers,
    )
    problem = assert_problem(bad, 422, "invalid-events")
    assert [e["pointer"] for e in problem["errors"]] == ["/samples/1"]
    events = {(e.source_record_id, e.deleted): e for e in _intervals(db_settings, device)}
    first = events[(str(u1), False)]
    assert first.steps == 412 and first.source == "healthkit"
    assert first.zone_offset_s in (-5 * 3600, -4 * 3600)
    assert events[(str(u2), False)].steps == 98
    assert events[(str(u1), True)].start == first.start


def test_phone_routes_need_a_device(client: TestClient) -> None:
    r = client.post("/v1/phone/healthkit/steps", json={"samples": []})
    assert_problem(r, 401, "unauthenticated")
