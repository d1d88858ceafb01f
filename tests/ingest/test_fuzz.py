"""Property-based fuzzing of the upload endpoints: thousands of malformed bodies, never a 5xx,
always a problem document with a request id, and the gateway keeps serving."""

from __future__ import annotations

import gzip
import struct
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ingest.conftest import Device, imu_batch, imu_json
from tests.ingest.test_upload import activity

pytestmark = pytest.mark.integration
FRAME = "application/vnd.rtm.imu-frame"
FUZZ = settings(max_examples=700, deadline=None, suppress_health_check=list(HealthCheck), database=None)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)


def check(r: Any) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert body["request_id"] == r.headers["x-request-id"] and isinstance(body["code"], str)


@pytest.fixture(scope="module")
def fuzz_device(client: TestClient, care: Any) -> Device:
    from tests.ingest.conftest import enrol

    return enrol(client, care)


def _mutate(base: dict[str, Any], keys: list[str], value: Any, drop: bool) -> dict[str, Any]:
    out = dict(base)
    for k in keys:
        if drop:
            out.pop(k, None)
        else:
            out[k] = value
    return out


def test_fuzz_json_events(client: TestClient, fuzz_device: Device) -> None:
    imu = imu_json(imu_batch(fuzz_device, n=20))
    act = activity(fuzz_device, 2000)

    @FUZZ
    @given(
        base=st.sampled_from([imu, act]),
        keys=st.lists(
            st.sampled_from(sorted(set(imu) | set(act) | {"kind", "extra"})), min_size=1, max_size=3
        ),
        value=json_values,
        drop=st.booleans(),
        wrap=st.sampled_from(["events", "list", "raw"]),
    )
    def run(base: dict[str, Any], keys: list[str], value: Any, drop: bool, wrap: str) -> None:
        ev = _mutate(base, keys, value, drop)
        doc: Any = {"events": [ev]} if wrap == "events" else [ev] if wrap == "list" else value
        r = client.post(
            "/v1/events",
            content=orjson.dumps(doc),
            headers={**fuzz_device.headers, "Content-Type": "application/json"},
        )
        check(r)

    run()


def test_fuzz_raw_bodies_all_routes(client: TestClient, fuzz_device: Device) -> None:
    routes = [
        "/v1/events",
        "/v1/phone/health-connect/steps",
        "/v1/phone/healthkit/steps",
        "/v1/webhooks/polar",
    ]

    @FUZZ
    @given(
        route=st.sampled_from(routes),
        body=st.binary(max_size=300) | json_values.map(orjson.dumps),
        ctype=st.sampled_from(
            ["application/json", FRAME, "text/plain", "application/json; charset=utf-8", ""]
        ),
        gz=st.booleans(),
    )
    def run(route: str, body: bytes, ctype: str, gz: bool) -> None:
        headers = {**fuzz_device.headers, "Content-Type": ctype}
        if gz:
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        check(client.post(route, content=body, headers=headers))

    run()


def test_fuzz_imu_frames(client: TestClient, fuzz_device: Device) -> None:
    good = imu_batch(fuzz_device, n=8)
    head = good.model_dump(mode="json", exclude={"acc", "gyr", "t_offsets_us", "event_id"})

    @FUZZ
    @given(
        key=st.sampled_from([*sorted(head), "n", "offsets"]),
        value=json_values,
        n=st.integers(-3, 12),
        offsets=st.booleans(),
        payload=st.binary(max_size=400),
        version=st.sampled_from([1, 1, 1, 2]),
    )
    def run(key: str, value: Any, n: int, offsets: bool, payload: bytes, version: int) -> None:
        h = {**head, "n": n, "offsets": offsets, key: value}
        raw = orjson.dumps(h)
        frame = struct.pack("<4sBI", b"RTMI", version, len(raw)) + raw + payload
        check(
            client.post("/v1/events", content=frame, headers={**fuzz_device.headers, "Content-Type": FRAME})
        )

    run()


def test_fuzz_phone_records(client: TestClient, fuzz_device: Device) -> None:
    record = {
        "startTime": "2026-11-20T08:00:00Z",
        "startZoneOffset": "+01:00",
        "endTime": "2026-11-20T08:10:00Z",
        "endZoneOffset": "+01:00",
        "count": 100,
        "metadata": {"id": "fz"},
    }
    sample = {
        "uuid": "0f0e0d0c-0b0a-4908-8706-050403020100",
        "startDate": "2026-11-20T08:00:00Z",
        "endDate": "2026-11-20T08:10:00Z",
        "quantity": 10.0,
        "metadata": {"HKTimeZone": "Europe/Paris"},
    }

    @FUZZ
    @given(
        which=st.sampled_from(["hc", "hk"]),
        key=st.sampled_from(sorted(set(record) | set(sample))),
        value=json_values,
        dels=st.lists(json_values, max_size=3),
    )
    def run(which: str, key: str, value: Any, dels: list[Any]) -> None:
        if which == "hc":
            doc = {"records": [{**record, key: value}], "deletedRecordIds": dels}
            url = "/v1/phone/health-connect/steps"
        else:
            doc = {"samples": [{**sample, key: value}], "deletedObjects": dels}
            url = "/v1/phone/healthkit/steps"
        check(
            client.post(
                url,
                content=orjson.dumps(doc),
                headers={**fuzz_device.headers, "Content-Type": "application/json"},
            )
        )

    run()
    assert client.get("/healthz").status_code == 200
