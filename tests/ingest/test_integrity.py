"""Nothing accepted silently differs from what is stored: the same id with other content is a 409
(except where the contract allows edits), text the database cannot store is refused up front,
and every accepted event sits in the outbox with its content digest until the sink stored it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from rtm.contract import encode
from rtm.contract.codec import content_digest
from tests.ingest.conftest import Device, frames, imu_batch, imu_json
from tests.ingest.test_upload import FRAME, activity, assert_problem, post, session

pytestmark = pytest.mark.integration


def test_imu_batch_resent_with_other_samples_is_409(
    client: TestClient, device: Device, db: psycopg.Connection[Any]
) -> None:
    t0 = datetime.now(UTC) - timedelta(hours=3)
    first = imu_batch(device, t0=t0, n=300, stream="same")
    other = imu_batch(device, t0=t0, n=300, stream="same", acc=np.zeros((300, 3), np.float32) + 9.81)
    assert first.id == other.id and encode(first) != encode(other)
    headers = {**device.headers, "Content-Type": FRAME}
    assert client.post("/v1/events", content=frames(first), headers=headers).status_code == 202
    r = client.post("/v1/events", content=frames(other), headers=headers)
    body = assert_problem(r, 409, "conflicting-event")
    assert body["errors"][0]["index"] == 0 and body["errors"][0]["code"] == "conflicting-event"
    assert str(first.id) in body["errors"][0]["detail"]
    # The first version stays, in the dedup record and in the outbox; the same as JSON is a duplicate.
    kept = db.execute("select digest from ingest_outbox where event_id = %s", (first.id,)).fetchone()
    stamped = first.model_copy(update={"episode_id": device.care.episode_id})  # as the gateway stamps it
    assert kept is not None and bytes(kept[0]) == content_digest(encode(stamped))
    assert post(client, device, [imu_json(first)]).json()["duplicates"] == 1


def test_session_marker_with_other_content_is_409_but_an_edited_step_record_is_a_revision(
    client: TestClient, device: Device
) -> None:
    marker = session(device)
    assert post(client, device, [marker]).status_code == 202
    moved = {**marker, "at": (datetime.fromisoformat(marker["at"]) - timedelta(minutes=5)).isoformat()}
    assert_problem(post(client, device, [moved]), 409, "conflicting-event")
    record = activity(device, steps=100, record="edit-me")
    assert post(client, device, [record]).json()["accepted"] == 1
    assert post(client, device, [{**record, "steps": 150}]).json()["accepted"] == 1


@pytest.mark.parametrize(
    ("field", "pointer"),
    [("firmware", "provenance.firmware"), ("vendor", "provenance.vendor")],
)
def test_nul_character_is_refused_at_the_gateway_naming_the_field(
    client: TestClient, device: Device, field: str, pointer: str
) -> None:
    ev = activity(device, minutes_ago=400)
    ev["provenance"] = {**ev["provenance"], field: "v1\u0000x"}
    body = assert_problem(post(client, device, [ev]), 422, "invalid-events")
    assert body["errors"][0]["code"] == "unstorable-text"
    assert pointer in body["errors"][0]["detail"] and "NUL" in body["errors"][0]["detail"]


def test_nul_character_in_a_phone_record_id_is_refused(client: TestClient, device: Device) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    record = {
        "startTime": start.isoformat(), "endTime": (start + timedelta(minutes=10)).isoformat(),
        "startZoneOffset": "+01:00", "endZoneOffset": "+01:00", "count": 100,
        "metadata": {"id": "hc\u0000-1"},
    }
    r = client.post("/v1/phone/health-connect/steps", json={"records": [record]}, headers=device.headers)
    body = assert_problem(r, 422, "invalid-events")
    assert body["errors"][0]["pointer"] == "/records/0"
    assert "NUL" in body["errors"][0]["detail"]


def test_a_resend_repairs_an_event_that_has_no_outbox_row(
    client: TestClient, device: Device, db: psycopg.Connection[Any], owner_db: psycopg.Connection[Any]
) -> None:
    # As for an event accepted before the outbox existed (and lost by the broker): the dedup record
    # says "duplicate", and the resend puts it back into the outbox rather than refusing it.
    batch = imu_batch(device, t0=datetime.now(UTC) - timedelta(hours=4), n=100, stream="repair")
    headers = {**device.headers, "Content-Type": FRAME}
    assert client.post("/v1/events", content=frames(batch), headers=headers).json()["accepted"] == 1
    owner_db.execute("delete from ingest_outbox where event_id = %s", (batch.id,))
    again = client.post("/v1/events", content=frames(batch), headers=headers)
    assert again.json()["duplicates"] == 1
    row = db.execute("select digest, stored_at from ingest_outbox where event_id = %s", (batch.id,)).fetchone()
    stamped = batch.model_copy(update={"episode_id": device.care.episode_id})
    assert row is not None and bytes(row[0]) == content_digest(encode(stamped)) and row[1] is None


def test_writer_cannot_delete_outbox_rows_but_can_prune_stored_ones(
    client: TestClient, device: Device, db: psycopg.Connection[Any]
) -> None:
    batch = imu_batch(device, t0=datetime.now(UTC) - timedelta(hours=5), n=100, stream="prune")
    headers = {**device.headers, "Content-Type": FRAME}
    assert client.post("/v1/events", content=frames(batch), headers=headers).status_code == 202
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("delete from ingest_outbox where event_id = %s", (batch.id,))
    pruned = db.execute("select ingest_outbox_prune('0 s', 1000)").fetchone()
    assert db.execute("select count(*) from ingest_outbox where event_id = %s", (batch.id,)).fetchone() == (1,)
    db.execute("update ingest_outbox set stored_at = now() - interval '1 hour' where event_id = %s", (batch.id,))
    pruned = db.execute("select ingest_outbox_prune('1 min', 1000)").fetchone()
    assert pruned is not None and pruned[0] >= 1
    assert db.execute("select count(*) from ingest_outbox where event_id = %s", (batch.id,)).fetchone() == (0,)
