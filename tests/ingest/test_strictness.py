"""Strict input and least privilege: nothing is coerced into a number, a bad month is a 400, the
writer role cannot change credentials, and secret files are private from their first byte."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient

from rtm.contract import encode
from rtm.stack.postgres import write_secret
from tests.ingest.conftest import Care, Device, imu_batch
from tests.ingest.test_upload import FRAME, activity, assert_problem, post

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("path", ["/v1/billing/export?month=2026-13&format=csv", "/v1/billing/summaries?month=2026-00"])
def test_impossible_month_is_400(client: TestClient, care: Care, path: str) -> None:
    r = client.get(path, headers={"Authorization": f"Bearer {care.clinic_token}"})
    body = assert_problem(r, 400, "invalid-request")
    assert "calendar month" in body["detail"]


@pytest.mark.parametrize(
    ("field", "value"), [("steps", "12"), ("steps", 12.5), ("steps", True), ("zone_offset_s", "3600"),
                         ("deleted", 1), ("active_minutes", "2")],
)
def test_numbers_and_flags_are_not_coerced(client: TestClient, device: Device, field: str, value: Any) -> None:
    ev = activity(device, minutes_ago=500)
    ev[field] = value
    body = assert_problem(post(client, device, [ev]), 422, "invalid-events")
    assert field in body["errors"][0]["detail"]


def test_what_real_clients_send_still_passes(client: TestClient, device: Device) -> None:
    ev = activity(device, minutes_ago=520)
    ev["active_minutes"] = 3  # an integer where a float is expected is a number, not a coercion
    assert post(client, device, [ev]).status_code == 202
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=9)
    hk = {"uuid": "0E1D2C3B-4A59-4687-9A8B-7C6D5E4F3A2B", "startDate": start.isoformat(),
          "endDate": (start + timedelta(minutes=10)).isoformat(), "quantity": 120}
    r = client.post("/v1/phone/healthkit/steps", json={"samples": [hk]}, headers=device.headers)
    assert r.status_code == 202, r.text
    r = client.post("/v1/phone/healthkit/steps", json={"samples": [{**hk, "quantity": "120"}]}, headers=device.headers)
    assert_problem(r, 422, "invalid-events")


def test_frame_header_sample_count_must_be_an_integer(client: TestClient, device: Device) -> None:
    frame = encode(imu_batch(device, n=100, stream="strict-n"))
    head_len = int.from_bytes(frame[5:9], "little")
    header = orjson.loads(frame[9 : 9 + head_len])
    header["n"] = 100.7
    head = orjson.dumps(header)
    bad = frame[:5] + len(head).to_bytes(4, "little") + head + frame[9 + head_len :]
    r = client.post("/v1/events", content=bad, headers={**device.headers, "Content-Type": FRAME})
    assert r.status_code in (400, 422), r.text
    assert "n must be an integer" in r.text


def test_writer_cannot_change_credentials(
    client: TestClient, device: Device, db: psycopg.Connection[Any]
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("update ingest_clinic_keys set revoked_at = null")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("update ingest_device_credentials set revoked_at = null where credential_id = %s",
                   (device.credential_id,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("insert into ingest_clinic_keys (key_id, clinic_id, secret_hash) values ('k', 'c', 'x')")
    # Revocation still works, through the one narrow function, and cannot be undone by it.
    r = client.delete(f"/v1/enrolments/{device.credential_id}",
                      headers={"Authorization": f"Bearer {device.care.clinic_token}"})
    assert r.status_code == 204
    row = db.execute("select revoked_at from ingest_device_credentials where credential_id = %s",
                     (device.credential_id,)).fetchone()
    assert row is not None and row[0] is not None
    again = db.execute("select ingest_revoke_device_credential(%s, 'again', now())", (device.credential_id,))
    assert again.fetchone() == (False,)


def test_secret_files_are_private_from_the_start(tmp_path: Path) -> None:
    old = os.umask(0)  # the worst umask: a plain write would create the file world-readable
    try:
        path = tmp_path / "pg_admin_password"
        write_secret(path, "s3cret")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        write_secret(path, "other")  # replaced, still private
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "other"
    finally:
        os.umask(old)
