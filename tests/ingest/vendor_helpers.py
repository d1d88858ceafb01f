"""Helpers of the vendor-connection tests: the queue and connection rows, and the intervals a
connection's device put on the raw activity topic (the last version of each event id)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg

from rtm.contract import ActivityInterval, decode
from rtm.settings import Settings
from rtm.topics import RAW_ACTIVITY
from tests.ingest.conftest import read_topic


def notification(db: Settings, vendor: str, nid: str) -> dict[str, Any] | None:
    with psycopg.connect(db.dsn("writer"), autocommit=True) as conn:
        cur = conn.execute(
            "select status, attempts, last_error from vendor_notifications where vendor = %s and notification_id = %s",
            (vendor, nid),
        )
        row = cur.fetchone()
    return None if row is None else {"status": row[0], "attempts": row[1], "last_error": row[2]}


def wait_queue_empty(db: Settings, vendor: str, user: str, timeout_s: float = 30.0) -> None:
    """Until no notification of this user is pending."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with psycopg.connect(db.dsn("writer"), autocommit=True) as conn:
            row = conn.execute(
                "select count(*) from vendor_notifications where vendor = %s and vendor_user_id = %s "
                "and status = 'pending'",
                (vendor, user),
            ).fetchone()
        if row is not None and row[0] == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{vendor} notifications of user {user} still pending after {timeout_s} s")


def connection(db: Settings, vendor: str, user: str) -> dict[str, Any]:
    with psycopg.connect(db.dsn("owner"), autocommit=True) as conn:
        cur = conn.execute(
            "select * from vendor_connections where vendor = %s and vendor_user_id = %s", (vendor, user)
        )
        names = [c.name for c in cur.description or []]
        row = cur.fetchone()
    assert row is not None, f"no {vendor} connection for {user}"
    return dict(zip(names, row, strict=True))


def intervals(db: Settings, patient_id: str, device_id: str) -> dict[uuid.UUID, ActivityInterval]:
    """The newest version of each vendor interval of this device (a revision replaces, never adds)."""
    out: dict[uuid.UUID, ActivityInterval] = {}
    for raw in read_topic(db, RAW_ACTIVITY.name, patient_id.encode()):
        e = decode(raw)
        if isinstance(e, ActivityInterval) and e.provenance.device_id == device_id and e.source == "vendor_cloud":
            out[e.id] = e
    return out
