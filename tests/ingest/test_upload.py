"""POST /v1/events against the real broker and database: acceptance, every rejection, the batch
policy and duplicate uploads."""

from __future__ import annotations

import gzip
import math
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from rtm.contract import ActivityInterval, ImuBatch, SessionMarker, decode
from rtm.settings import Settings
from rtm.topics import RAW_ACTIVITY, RAW_IMU, RAW_SESSION
from tests.ingest.conftest import Device, dedup_rows, frames, imu_batch, imu_json, read_topic

pytestmark = pytest.mark.integration
FRAME = "application/vnd.rtm.imu-frame"


def activity(
    dev: Device, minutes_ago: int = 90, steps: int = 120, record: str | None = None
) -> dict[str, Any]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes_ago)
    return {
        "kind": "activity_interval",
        "patient_id": dev.care.patient_id,
        "provenance": {"adapter": "test-hub", "vendor": "test", "device_id": dev.device_id},
        "source": "device",
        "source_record_id": record,
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=5)).isoformat(),
        "steps": steps,
        "zone_offset_s": 3600,
    }


def session(dev: Device) -> dict[str, Any]:
    return {
        "kind": "session_marker",
        "patient_id": dev.care.patient_id,
        "provenance": {"adapter": "test-hub", "vendor": "test", "device_id": dev.device_id},
        "session_id": f"sess-{uuid.uuid4().hex[:6]}",
        "phase": "start",
        "at": (datetime.now(UTC) - timedelta(minutes=30)).isoformat(),
        "exercise": "squat",
    }


def post(client: TestClient, dev: Device, events: list[Any], **headers: str) -> Any:
    return client.post(
        "/v1/events",
        content=orjson.dumps({"events": events}),
        headers={**dev.headers, "Content-Type": "application/json", **headers},
    )


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["code"] == code and body["status"] == status
    assert body["type"] == f"urn:rtm:problem:{code}"
    assert body["request_id"] == r.headers["x-request-id"]
    return body


def test_json_batch_is_accepted_and_in_kafka(
    client: TestClient, device: Device, db_settings: Settings
) -> None:
    batch = imu_batch(device)
    r = post(client, device, [imu_json(batch), activity(device), session(device)])
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["accepted"] == 3 and body["duplicates"] == 0
    assert [x["status"] for x in body["results"]] == ["accepted"] * 3
    key = device.care.patient_id.encode()
    imu = [decode(v) for v in read_topic(db_settings, RAW_IMU.name, key)]
    mine = [e for e in imu if isinstance(e, ImuBatch) and e.id == batch.id]
    assert len(mine) == 1
    assert mine[0].episode_id == device.care.episode_id  # stamped from the enrolment
    assert np.array_equal(mine[0].acc, batch.acc)
    acts = [decode(v) for v in read_topic(db_settings, RAW_ACTIVITY.name, key)]
    assert any(isinstance(e, ActivityInterval) and e.provenance.device_id == device.device_id for e in acts)
    sess = [decode(v) for v in read_topic(db_settings, RAW_SESSION.name, key)]
    assert any(isinstance(e, SessionMarker) and e.provenance.device_id == device.device_id for e in sess)
    assert dedup_rows(db_settings, [uuid.UUID(x["event_id"]) for x in body["results"]]) == 3


def test_binary_frames_gzip_and_duplicates(client: TestClient, device: Device, db_settings: Settings) -> None:
    t0 = datetime.now(UTC) - timedelta(hours=2)
    batches = [imu_batch(device, t0 + timedelta(seconds=10 * i), n=1000, stream="rec-1") for i in range(3)]
    payload = gzip.compress(frames(*batches))
    headers = {**device.headers, "Content-Type": FRAME, "Content-Encoding": "gzip"}
    first = client.post("/v1/events", content=payload, headers=headers)
    assert first.status_code == 202, first.text
    assert first.json()["accepted"] == 3
    again = client.post("/v1/events", content=payload, headers=headers)
    assert again.status_code == 202
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 3
    # The same batches as JSON are the same events: duplicates too.
    as_json = post(client, device, [imu_json(b) for b in batches])
    assert as_json.json()["duplicates"] == 3
    published = [decode(v) for v in read_topic(db_settings, RAW_IMU.name, device.care.patient_id.encode())]
    for b in batches:
        assert sum(1 for e in published if e.id == b.id) == 1


def test_revised_record_is_published_again(client: TestClient, device: Device, db_settings: Settings) -> None:
    original = activity(device, steps=100, record="rec-42")
    edited = {**original, "steps": 140}
    assert post(client, device, [original]).json()["accepted"] == 1
    r = post(client, device, [edited])
    assert r.json()["accepted"] == 1  # same event id, new content: a revision
    assert post(client, device, [edited]).json()["duplicates"] == 1


def test_duplicate_inside_one_request(client: TestClient, device: Device) -> None:
    ev = activity(device, minutes_ago=200)
    r = post(client, device, [ev, ev])
    assert [x["status"] for x in r.json()["results"]] == ["accepted", "duplicate"]
    conflicting = post(client, device, [activity(device, 300, 10, "x1"), activity(device, 300, 11, "x1")])
    assert_problem(conflicting, 422, "invalid-events")


@pytest.mark.parametrize(
    "auth", [None, "Basic abc", "Bearer nonsense", "Bearer rtmd_0123456789abcdef." + "A" * 43]
)
def test_unauthenticated(client: TestClient, device: Device, auth: str | None) -> None:
    headers = {"Content-Type": "application/json"} | ({"Authorization": auth} if auth else {})
    r = client.post("/v1/events", content=b'{"events": []}', headers=headers)
    body = assert_problem(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "patient" not in orjson.dumps(body).decode()


def test_wrong_secret_and_clinic_key_are_401(client: TestClient, device: Device) -> None:
    wrong = device.token[:-4] + ("AAAA" if not device.token.endswith("AAAA") else "BBBB")
    r = client.post("/v1/events", json={"events": []}, headers={"Authorization": f"Bearer {wrong}"})
    assert_problem(r, 401, "unauthenticated")
    r = client.post(
        "/v1/events", json={"events": []}, headers={"Authorization": f"Bearer {device.care.clinic_token}"}
    )
    assert_problem(r, 401, "unauthenticated")


def test_revoked_credential_is_403(client: TestClient, device: Device, db_settings: Settings) -> None:
    assert post(client, device, [activity(device, 400)]).status_code == 202
    r = client.delete(
        f"/v1/enrolments/{device.credential_id}",
        headers={"Authorization": f"Bearer {device.care.clinic_token}"},
    )
    assert r.status_code == 204
    assert_problem(post(client, device, [activity(device, 401)]), 403, "credential-revoked")


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda e, d: e | {"patient_id": "someone-else"}, "wrong-patient"),
        (lambda e, d: e | {"provenance": {**e["provenance"], "device_id": "other-device"}}, "wrong-device"),
        (lambda e, d: e | {"episode_id": "other-episode"}, "wrong-episode"),
    ],
)
def test_outside_enrolment_is_403_by_index(
    client: TestClient, device: Device, mutate: Any, code: str, db_settings: Settings
) -> None:
    good = activity(device, 500)
    bad = mutate(activity(device, 510), device)
    r = post(client, device, [good, bad])
    body = assert_problem(r, 403, "forbidden-events")
    assert body["errors"] == [{"index": 1, "code": code, "detail": body["errors"][0]["detail"]}]
    assert (
        dedup_rows(
            db_settings, [ActivityInterval.model_validate({k: v for k, v in good.items() if k != "kind"}).id]
        )
        == 0
    )  # all or nothing


def _bad_frame(dev: Device, **arrays: Any) -> bytes:
    ok = imu_batch(dev)
    head = ok.model_dump(mode="json", exclude={"acc", "gyr", "t_offsets_us"})
    acc, gyr = arrays.get("acc", ok.acc), arrays.get("gyr", ok.gyr)
    head.pop("event_id")
    head |= arrays.get("header", {})
    head["n"], head["offsets"] = len(acc), False
    h = orjson.dumps(head)
    return (
        struct.pack("<4sBI", b"RTMI", 1, len(h))
        + h
        + np.asarray(acc, "<f4").tobytes()
        + np.asarray(gyr, "<f4").tobytes()
    )


def test_each_invalid_event_reported_by_index_and_nothing_accepted(
    client: TestClient, device: Device, db_settings: Settings
) -> None:
    good = imu_batch(device)
    nan_acc = good.acc.copy()
    nan_acc[5, 1] = np.nan
    huge = good.acc.copy()
    huge[3, 0] = 1000.0
    body = (
        frames(good)
        + _bad_frame(device, acc=nan_acc)
        + _bad_frame(device, acc=huge)
        + _bad_frame(device, header={"sample_rate_hz": 5000.0})
        + _bad_frame(device, header={"t0": (datetime.now(UTC) + timedelta(hours=2)).isoformat()})
        + _bad_frame(device, header={"t0": (datetime.now(UTC) - timedelta(days=30)).isoformat()})
    )
    r = client.post("/v1/events", content=body, headers={**device.headers, "Content-Type": FRAME})
    problem = assert_problem(r, 422, "invalid-events")
    codes = {e["index"]: e["code"] for e in problem["errors"]}
    assert codes == {
        1: "non-finite",
        2: "out-of-physical-range",
        3: "out-of-physical-range",
        4: "future-timestamp",
        5: "before-enrolment",
    }
    assert problem["rejected"] == 5 and problem["total"] == 6
    assert dedup_rows(db_settings, [good.id]) == 0
    # The client drops the listed items and resends: the rest is accepted.
    assert (
        client.post(
            "/v1/events", content=frames(good), headers={**device.headers, "Content-Type": FRAME}
        ).status_code
        == 202
    )


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ({"kind": "imu_batch", "acc": [["1", 2, 3]]}, "invalid"),
        ({"kind": "imu_batch", "acc": [[1, 2]]}, "invalid"),
        ({"kind": "nonsense"}, "unknown-kind"),
        ({"kind": "therapist_time_entry"}, "kind-not-allowed"),
        ({"kind": "activity_interval", "steps": -5}, "invalid"),
        ({"kind": "activity_interval", "steps": 100000}, "out-of-physical-range"),
        ({"kind": "activity_interval", "start": "2026-01-01T00:00:00"}, "naive-timestamp"),
        ({"kind": "imu_batch", "sample_rate_hz": "fast"}, "invalid"),
        ([1, 2, 3], "malformed"),
    ],
)
def test_wrong_types_and_ranges(client: TestClient, device: Device, event: Any, code: str) -> None:
    if isinstance(event, dict):
        base = imu_json(imu_batch(device)) if event.get("kind") == "imu_batch" else activity(device, 600)
        event = base | event
    r = post(client, device, [activity(device, 700), event])
    problem = assert_problem(r, 422, "invalid-events")
    assert problem["errors"][0]["index"] == 1
    assert problem["errors"][0]["code"] == code, problem


@pytest.mark.parametrize(
    ("content", "ctype", "status", "code"),
    [
        (b"{not json", "application/json", 400, "malformed-body"),
        (b'{"events": {}}', "application/json", 400, "malformed-body"),
        (b'{"events": [NaN]}', "application/json", 400, "malformed-body"),
        (b'{"events": [1e999]}', "application/json", 400, "malformed-body"),
        (b"RTMI\x01\xff\xff\xff\x7f", FRAME, 400, "malformed-body"),
        (b"hello", "text/plain", 415, "unsupported-media-type"),
    ],
)
def test_malformed_bodies(
    client: TestClient, device: Device, content: bytes, ctype: str, status: int, code: str
) -> None:
    r = client.post("/v1/events", content=content, headers={**device.headers, "Content-Type": ctype})
    assert_problem(r, status, code)


def test_oversized_bodies(client: TestClient, device: Device) -> None:
    big = b"x" * (5 << 20)
    assert_problem(
        client.post("/v1/events", content=big, headers={**device.headers, "Content-Type": FRAME}),
        413,
        "payload-too-large",
    )
    bomb = gzip.compress(b"[" + b" " * (20 << 20) + b"]")
    r = client.post(
        "/v1/events",
        content=bomb,
        headers={**device.headers, "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert_problem(r, 413, "payload-too-large")
    many = [activity(device, 800 + i) for i in range(501)]
    assert_problem(post(client, device, many), 413, "too-many-events")
    r = client.post(
        "/v1/events",
        content=b"{}",
        headers={**device.headers, "Content-Type": "application/json", "Content-Encoding": "br"},
    )
    assert_problem(r, 415, "unsupported-media-type")


def test_request_id_everywhere(client: TestClient, device: Device) -> None:
    r = post(client, device, [activity(device, 900)], **{"X-Request-ID": "client-req-0001"})
    assert r.headers["x-request-id"] == "client-req-0001" and r.json()["request_id"] == "client-req-0001"
    r = client.post(
        "/v1/events", content=b"{", headers={**device.headers, "Content-Type": "application/json"}
    )
    assert len(r.json()["request_id"]) == 32


def test_nan_in_json_string_is_rejected(client: TestClient, device: Device) -> None:
    ev = imu_json(imu_batch(device))
    ev["acc"][0][0] = "NaN"
    assert assert_problem(post(client, device, [ev]), 422, "invalid-events")["errors"][0]["code"] == "invalid"
    assert math.isnan(float("NaN"))
