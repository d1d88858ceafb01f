"""Raw topics into the database: IMU batches (archived and queued for analysis), step
intervals (with their per-minute view and data-day facts), exercise-session markers, time-zone
changes and device assignments."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import faust

from flags import evaluate_patients
from processors.activity import recompute_minutes
from processors.agents.common import ack, batches, decode_batch, sink, store
from processors.app import TOPICS, app, settings
from processors.dayfacts import DayChange, rebuild_day_facts
from processors.sink.raw import Refused, store_activity, store_assignments, store_imu, store_sessions, store_timezones
from processors.state import patient_table
from rtm import topics
from rtm.contract import ActivityInterval, DeviceAssignment, ImuBatch, SessionMarker, TimezoneChange
from rtm.db import Conn

# Small, rebuildable state: per patient, the latest first-sample instant seen from each device (a
# max is idempotent, so redelivery cannot corrupt it). Operators read it at /tables/device-last-seen/.
last_seen = patient_table(app, topics.DEVICE_LAST_SEEN.name, topics.DEVICE_LAST_SEEN.partitions, default=dict)


@app.task
async def _start_sink() -> None:
    sink.start()


def _note_last_seen(items: list[ImuBatch]) -> None:
    latest: dict[str, dict[str, str]] = {}
    for batch in items:
        seen = latest.setdefault(batch.patient_id, dict(last_seen[batch.patient_id]))
        stamp = batch.t0.isoformat()
        if stamp > seen.get(batch.provenance.device_id, ""):
            seen[batch.provenance.device_id] = stamp
    for patient, seen in latest.items():
        if seen != last_seen[patient]:
            last_seen[patient] = seen


@app.agent(TOPICS[topics.RAW_IMU.name])
async def imu_batches(stream: faust.StreamT[Any]) -> None:
    async for events in batches(stream):
        decoded = await decode_batch(events, ImuBatch)
        frames = {b.id: ev.message.value or b"" for ev, b in decoded}

        def write(conn: Conn, items: list[ImuBatch], frames: dict[uuid.UUID, bytes] = frames) -> list[Refused]:
            return store_imu(conn, [(b, frames[b.id]) for b in items])

        refused = await store("imu_batches", decoded, write)
        _note_last_seen([b for _, b in decoded if b.id not in refused])
        ack(events)


def _store_activity(conn: Conn, intervals: list[ActivityInterval]) -> list[Refused]:
    changed, refused = store_activity(conn, intervals)
    spans = recompute_minutes(conn, changed, settings.active_cadence_spm)
    rebuild_day_facts(conn, [DayChange(s.patient_id, s.start, s.end) for s in spans])
    if spans:
        evaluate_patients(conn, {s.patient_id for s in spans}, datetime.now(UTC))
    return refused


@app.agent(TOPICS[topics.RAW_ACTIVITY.name])
async def activity_intervals(stream: faust.StreamT[Any]) -> None:
    async for events in batches(stream):
        await store("activity", await decode_batch(events, ActivityInterval), _store_activity)
        ack(events)


@app.agent(TOPICS[topics.RAW_SESSION.name])
async def session_markers(stream: faust.StreamT[Any]) -> None:
    async for events in batches(stream):
        await store("sessions", await decode_batch(events, SessionMarker),
                    lambda conn, markers: store_sessions(conn, markers, settings.session_margin_s,
                                                         settings.max_session_s))
        ack(events)


def _history_changed(conn: Conn, changes: list[tuple[str, datetime]]) -> list[Refused]:
    # Every local date from the change on may have moved: re-date all of them.
    rebuild_day_facts(conn, [DayChange(p, at - timedelta(days=1), datetime.now(UTC) + timedelta(days=2))
                             for p, at in changes])
    return []


@app.agent(TOPICS[topics.RAW_TIMEZONE.name])
async def timezone_changes(stream: faust.StreamT[Any]) -> None:
    async for events in batches(stream):
        await store("timezones", await decode_batch(events, TimezoneChange),
                    lambda conn, changes: _history_changed(conn, store_timezones(conn, changes)))
        ack(events)


@app.agent(TOPICS[topics.DEVICE_ASSIGNMENT.name])
async def device_assignments(stream: faust.StreamT[Any]) -> None:
    async for events in batches(stream):
        await store("assignments", await decode_batch(events, DeviceAssignment),
                    lambda conn, changes: _history_changed(conn, store_assignments(conn, changes)))
        ack(events)
