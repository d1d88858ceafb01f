"""Raw topics into the database: IMU batches (archived and queued for analysis), step
intervals (with their per-minute view and data-day facts), exercise-session markers, time-zone
changes and device assignments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import faust

from processors.activity import recompute_minutes
from processors.agents.common import ack, batches, decode_batch, sink
from processors.app import TOPICS, app, settings
from processors.dayfacts import DayChange, rebuild_day_facts
from processors.sink.postgres import Conn
from processors.sink.raw import store_activity, store_assignments, store_imu, store_sessions, store_timezones
from processors.state import patient_table
from rtm import topics
from rtm.contract import ActivityInterval, DeviceAssignment, ImuBatch, SessionMarker, TimezoneChange

# Small, rebuildable state: per patient, the latest first-sample instant seen from each device (a
# max is idempotent, so redelivery cannot corrupt it). Operators read it at /tables/device-last-seen/.
last_seen = patient_table(app, "device-last-seen", topics.RAW_IMU.partitions, default=dict)


@app.task
async def _start_sink() -> None:
    sink.start()


@app.agent(TOPICS[topics.RAW_IMU.name])
async def imu_batches(stream: faust.StreamT) -> None:
    async for events in batches(stream):
        decoded = await decode_batch(events, ImuBatch)
        items = [(batch, ev.message.value) for ev, batch in decoded]
        await sink.run_async("imu_batches", lambda conn: store_imu(conn, items), len(items))
        latest: dict[str, dict[str, str]] = {}
        for batch, _ in items:
            seen = latest.setdefault(batch.patient_id, dict(last_seen[batch.patient_id]))
            stamp = batch.t0.isoformat()
            if stamp > seen.get(batch.provenance.device_id, ""):
                seen[batch.provenance.device_id] = stamp
        for patient, seen in latest.items():
            if seen != last_seen[patient]:
                last_seen[patient] = seen
        ack(events)


def _store_activity(conn: Conn, intervals: list[ActivityInterval]) -> None:
    changed = store_activity(conn, intervals)
    spans = recompute_minutes(conn, changed, settings.active_cadence_spm)
    rebuild_day_facts(conn, [DayChange(s.patient_id, s.start, s.end) for s in spans])


@app.agent(TOPICS[topics.RAW_ACTIVITY.name])
async def activity_intervals(stream: faust.StreamT) -> None:
    async for events in batches(stream):
        intervals = [iv for _, iv in await decode_batch(events, ActivityInterval)]
        await sink.run_async("activity", lambda conn: _store_activity(conn, intervals), len(intervals))
        ack(events)


@app.agent(TOPICS[topics.RAW_SESSION.name])
async def session_markers(stream: faust.StreamT) -> None:
    async for events in batches(stream):
        markers = [m for _, m in await decode_batch(events, SessionMarker)]
        await sink.run_async(
            "sessions",
            lambda conn: store_sessions(conn, markers, settings.session_margin_s, settings.max_session_s),
            len(markers),
        )
        ack(events)


def _history_changed(conn: Conn, changes: list[tuple[str, datetime]]) -> None:
    # Every local date from the change on may have moved: re-date all of them.
    rebuild_day_facts(conn, [DayChange(p, at - timedelta(days=1), datetime.now(UTC) + timedelta(days=2))
                             for p, at in changes])


@app.agent(TOPICS[topics.RAW_TIMEZONE.name])
async def timezone_changes(stream: faust.StreamT) -> None:
    async for events in batches(stream):
        changes = [c for _, c in await decode_batch(events, TimezoneChange)]
        await sink.run_async("timezones", lambda conn: _history_changed(conn, store_timezones(conn, changes)),
                             len(changes))
        ack(events)


@app.agent(TOPICS[topics.DEVICE_ASSIGNMENT.name])
async def device_assignments(stream: faust.StreamT) -> None:
    async for events in batches(stream):
        changes = [c for _, c in await decode_batch(events, DeviceAssignment)]
        await sink.run_async("assignments",
                             lambda conn: _history_changed(conn, store_assignments(conn, changes)), len(changes))
        ack(events)
