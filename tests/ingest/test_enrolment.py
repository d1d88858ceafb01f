"""Enrolment and clinic auth; health, readiness, metrics and OpenAPI; the rate limit."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from device_adapters.cloud.fakes.polar import PolarFake
from rtm.contract import DeviceAssignment, decode
from rtm.settings import Settings
from rtm.topics import DEVICE_ASSIGNMENT
from tests.ingest.conftest import Care, build_client, enrol, make_care, read_topic
from tests.ingest.test_upload import activity, assert_problem, post

pytestmark = pytest.mark.integration


def _body(care: Care, device_id: str) -> dict[str, str]:
    return {
        "patient_id": care.patient_id,
        "episode_id": care.episode_id,
        "device_id": device_id,
        "model_id": care.model_id,
    }


def test_enrolment_rules(client: TestClient, care: Care, db_settings: Settings) -> None:
    hdr = {"Authorization": f"Bearer {care.clinic_token}"}
    dev = f"dev-{uuid.uuid4().hex[:8]}"
    assert_problem(client.post("/v1/enrolments", json=_body(care, dev)), 401, "unauthenticated")
    r = client.post("/v1/enrolments", json=_body(care, dev), headers=hdr)
    assert r.status_code == 201 and r.json()["token"].startswith("rtmd_")
    again = client.post("/v1/enrolments", json=_body(care, dev), headers=hdr)
    assert_problem(again, 409, "conflict")
    other = make_care(db_settings)
    foreign = client.post(
        "/v1/enrolments", json=_body(care, "dev-x"), headers={"Authorization": f"Bearer {other.clinic_token}"}
    )
    assert_problem(foreign, 404, "not-found")  # another clinic's episode is invisible
    assert_problem(
        client.post("/v1/enrolments", json={**_body(care, "dev-y"), "model_id": "nope"}, headers=hdr),
        422,
        "invalid-request",
    )
    assert_problem(client.post("/v1/enrolments", json={"patient_id": 5}, headers=hdr), 422, "invalid-request")
    assert_problem(
        client.delete(
            f"/v1/enrolments/{r.json()['credential_id']}",
            headers={"Authorization": f"Bearer {other.clinic_token}"},
        ),
        404,
        "not-found",
    )
    assert client.delete(f"/v1/enrolments/{r.json()['credential_id']}", headers=hdr).status_code == 204
    assert client.post("/v1/enrolments", json=_body(care, dev), headers=hdr).status_code == 201  # re-enrol
    actions = [
        e.action
        for e in (
            decode(v) for v in read_topic(db_settings, DEVICE_ASSIGNMENT.name, care.patient_id.encode())
        )
        if isinstance(e, DeviceAssignment) and e.device_id == dev
    ]
    assert actions == ["assign", "release", "assign"]


def test_operations_endpoints(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    metrics = client.get("/metrics").text
    assert "rtm_ingest_requests_total" in metrics and "rtm_ingest_events_total" in metrics
    spec = client.get("/openapi.json").json()
    assert {
        "/v1/events",
        "/v1/phone/health-connect/steps",
        "/v1/phone/healthkit/steps",
        "/v1/enrolments",
        "/v1/webhooks/polar",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(spec["paths"])
    assert "application/vnd.rtm.imu-frame" in spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    assert_problem(client.get("/nowhere"), 404, "not-found")
    assert_problem(client.get("/v1/events"), 405, "method-not-allowed")


def test_rate_limit_per_device(db_settings: Settings, care: Care, polar_fake: PolarFake) -> None:
    with build_client(db_settings, polar_fake, rate_per_s=0.5, burst=3) as limited:
        dev = enrol(limited, care)
        other = enrol(limited, care)
        statuses = [post(limited, dev, [activity(dev, 1000 + i)]).status_code for i in range(4)]
        assert statuses == [202, 202, 202, 429]
        r = post(limited, dev, [activity(dev, 1100)])
        problem = assert_problem(r, 429, "rate-limited")
        assert 1 <= int(r.headers["retry-after"]) <= 2 and problem["retry_after_s"] > 0
        assert post(limited, other, [activity(other, 1000)]).status_code == 202  # per device
