"""Pairing codes and hub health against the real gateway app and database: a code is single-use,
expires, is stored only as a digest, gives the device's credential a new secret (the enrolment's
token stops working), and repeated failures lock the address out; health reports are stored,
ordered and exported as metrics."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from device_adapters.cloud.fakes.polar import PolarFake
from ingest.enrolment import issue_pairing_code_sync
from ingest.tokens import normalise_pairing_code
from rtm.settings import Settings
from tests.ingest.conftest import PEPPER, Care, Device, build_client, enrol, imu_batch, imu_json

pytestmark = pytest.mark.integration


def issue(client: TestClient, dev: Device, **body: Any) -> dict[str, Any]:
    r = client.post(f"/v1/devices/{dev.device_id}/pairing-code", json=body or None,
                    headers={"Authorization": f"Bearer {dev.care.clinic_token}"})
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc


def upload(client: TestClient, dev: Device, token: str) -> int:
    r = client.post("/v1/events", json={"events": [imu_json(imu_batch(dev))]},
                    headers={"Authorization": f"Bearer {token}"})
    return r.status_code


def test_code_is_redeemed_once_for_a_fresh_credential(client: TestClient, care: Care,
                                                       db_settings: Settings) -> None:
    dev = enrol(client, care)
    code = issue(client, dev)
    assert normalise_pairing_code(code["code"]) is not None and len(code["code"]) == 9
    with psycopg.connect(db_settings.dsn("writer")) as conn:
        stored = conn.execute("select code_hash from ingest_pairing_codes where device_id = %s",
                              (dev.device_id,)).fetchall()
    assert len(stored) == 1 and code["code"].encode() not in bytes(stored[0][0])  # a digest only
    typed = code["code"].lower().replace("-", " ")  # as a person types it
    r = client.post("/v1/pairing", json={"code": typed})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    got = r.json()
    assert (got["device_id"], got["credential_id"], got["patient_id"]) == (
        dev.device_id, dev.credential_id, care.patient_id)
    assert got["token"] != dev.token
    assert upload(client, dev, got["token"]) == 202
    assert upload(client, dev, dev.token) == 401  # the token shown at enrolment no longer works
    again = client.post("/v1/pairing", json={"code": code["code"]})
    assert again.status_code == 410 and again.json()["code"] == "pairing-code-used"


def test_new_code_voids_the_earlier_one_and_expiry_holds(client: TestClient, care: Care,
                                                         db_settings: Settings) -> None:
    dev = enrol(client, care)
    first = issue(client, dev)
    second = issue(client, dev, ttl_s=1)
    r = client.post("/v1/pairing", json={"code": first["code"]})
    assert r.status_code == 410 and r.json()["code"] == "pairing-code-expired"
    time.sleep(1.2)
    r = client.post("/v1/pairing", json={"code": second["code"]})
    assert r.status_code == 410 and r.json()["code"] == "pairing-code-expired"
    assert upload(client, dev, dev.token) == 202  # nothing redeemed: the enrolment token still works
    # The synchronous issuer (clinic app, CLI) makes codes the gateway redeems.
    with psycopg.connect(db_settings.dsn("writer"), autocommit=True) as conn:
        code = issue_pairing_code_sync(conn, PEPPER.encode(), care.clinic_id, dev.device_id, 60)
    assert client.post("/v1/pairing", json={"code": code.code}).status_code == 200


def test_codes_only_for_own_live_enrolments(client: TestClient, care: Care, db_settings: Settings) -> None:
    from tests.ingest.conftest import make_care

    other = make_care(db_settings)
    dev = enrol(client, care)
    r = client.post(f"/v1/devices/{dev.device_id}/pairing-code", headers={"Authorization": f"Bearer "
                                                                            f"{other.clinic_token}"})
    assert r.status_code == 404
    r = client.post(f"/v1/devices/{dev.device_id}/pairing-code", headers=dev.headers)
    assert r.status_code == 403  # a device credential cannot issue codes
    code = issue(client, dev)
    r = client.delete(f"/v1/enrolments/{dev.credential_id}", headers={"Authorization": f"Bearer {care.clinic_token}"})
    assert r.status_code == 204
    r = client.post("/v1/pairing", json={"code": code["code"]})
    assert r.status_code == 409  # the enrolment was revoked after the code was issued
    r = client.post(f"/v1/devices/{dev.device_id}/pairing-code", headers={"Authorization": f"Bearer "
                                                                            f"{care.clinic_token}"})
    assert r.status_code == 404


def test_failed_attempts_lock_the_address_out(db_settings: Settings, polar_fake: PolarFake, care: Care) -> None:
    with build_client(db_settings, polar_fake, pairing_failure_burst=3, pairing_failure_rate_per_s=0.01) as c:
        dev = enrol(c, care)
        code = issue(c, dev)["code"]
        assert c.post("/v1/pairing", json={"code": "not a pairing code"}).status_code == 422
        for _ in range(2):
            r = c.post("/v1/pairing", json={"code": "ZZZZ-ZZZZ" if code != "ZZZZ-ZZZZ" else "YYYY-YYYY"})
            assert r.status_code == 404 and r.json()["code"] == "pairing-code-unknown"
        r = c.post("/v1/pairing", json={"code": code})  # even the right code: locked out
        assert r.status_code == 429 and r.json()["code"] == "pairing-locked"
        assert int(r.headers["retry-after"]) >= 60
        metrics = c.get("/metrics").text
        assert 'rtm_ingest_pairing_total{outcome="locked"}' in metrics


def report(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hub_id": "hub-kitchen", "agent_version": "0.1.0", "at": datetime.now(UTC).isoformat(),
        "battery_pct": 64, "connected": True, "last_sync": (datetime.now(UTC) - timedelta(minutes=2)).isoformat(),
        "spool_depth": 12, "spool_bytes": 40960, "evictions": 3, "rejected": 0, "bad_frames": 1, "clock_resets": 0}
    body.update(over)
    return body


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")
               or line.startswith(name + "{"))


def test_hub_health_is_stored_and_exported(client: TestClient, care: Care, db_settings: Settings) -> None:
    dev = enrol(client, care)
    before = client.get("/metrics").text
    r = client.put("/v1/hub/health", json=report(), headers=dev.headers)
    assert r.status_code == 204, r.text
    later = report(at=(datetime.now(UTC) + timedelta(seconds=1)).isoformat(), evictions=10, battery_pct=None,
                   connected=False, spool_depth=500)
    assert client.put("/v1/hub/health", json=later, headers=dev.headers).status_code == 204
    stale = report(at=(datetime.now(UTC) - timedelta(hours=1)).isoformat(), spool_depth=7)
    assert client.put("/v1/hub/health", json=stale, headers=dev.headers).status_code == 204  # ignored
    with psycopg.connect(db_settings.dsn("reader")) as conn:
        row = conn.execute("select hub_id, patient_id, clinic_id, battery_pct, connected, spool_depth, evictions "
                           "from hub_health where device_id = %s", (dev.device_id,)).fetchone()
    assert row == ("hub-kitchen", care.patient_id, care.clinic_id, None, False, 500, 10)
    after = client.get("/metrics").text
    assert _metric(after, "rtm_hub_spool_evictions_total") - _metric(before, "rtm_hub_spool_evictions_total") == 10
    assert _metric(after, "rtm_hub_spool_depth_events_count") - _metric(before, "rtm_hub_spool_depth_events_count") == 2
    assert _metric(after, "rtm_hub_device_battery_percent_count") - _metric(
        before, "rtm_hub_device_battery_percent_count") == 1
    assert 'rtm_hub_health_reports_total{agent_version="0.1.0"}' in after


@pytest.mark.parametrize(("over", "status"), [
    ({"battery_pct": 101}, 422), ({"spool_depth": -1}, 422), ({"agent_version": "1.0 <script>"}, 422),
    ({"at": (datetime.now(UTC) + timedelta(hours=2)).isoformat()}, 422), ({"surprise": 1}, 422),
])
def test_bad_health_reports_are_refused(client: TestClient, care: Care, over: dict[str, Any], status: int) -> None:
    dev = enrol(client, care)
    r = client.put("/v1/hub/health", json=report(**over), headers=dev.headers)
    assert r.status_code == status and r.headers["content-type"].startswith("application/problem+json"), r.text


def test_health_needs_a_device_credential(client: TestClient, care: Care) -> None:
    assert client.put("/v1/hub/health", json=report()).status_code == 401
    r = client.put("/v1/hub/health", json=report(), headers={"Authorization": f"Bearer {care.clinic_token}"})
    assert r.status_code == 401


def test_pairing_code_format() -> None:
    from ingest.tokens import hash_pairing_code, hash_secret, new_pairing_code

    codes = {new_pairing_code() for _ in range(200)}
    assert len(codes) == 200 and all(len(c) == 9 and c[4] == "-" for c in codes)
    assert all(normalise_pairing_code(c) == c.replace("-", "") for c in codes)
    assert normalise_pairing_code(" k7qm 3xpd ") == "K7QM3XPD"
    assert normalise_pairing_code("IOLO-1010") == "10101010"  # I and L read as 1, O as 0
    for bad in ("K7QM-3XP", "K7QM-3XPDD", "K7QU-3XPD", "K7QM_3XPD", ""):
        assert normalise_pairing_code(bad) is None, bad
    pepper = b"p"
    assert hash_pairing_code(pepper, "K7QM3XPD") != hash_secret(pepper, "K7QM3XPD")  # domain-separated
