"""Raw topics into their archive hypertables, plus a per-device "last seen" table.

Batches are taken without acknowledging; the events are acknowledged only once the sink's
transaction has committed, so Kafka offsets never run ahead of the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import faust
from faust.types import EventT
from faust.web import Request, Response, View

from processors.app import TOPICS, app, settings
from processors.deadletter import dead_letter
from processors.sink.postgres import PostgresSink, UpsertSpec
from processors.state import patient_table
from processors.sink.rows import ACTIVITY_INTERVALS, IMU_BATCHES, activity_row, imu_row
from rtm import topics
from rtm.contract import ActivityInterval, DecodeError, Event, ImuBatch, decode

sink = PostgresSink(settings)

# Small, rebuildable state: per patient, the latest first-sample instant seen from each device (a
# max is idempotent, so redelivery cannot corrupt it).
last_seen = patient_table(app, "device-last-seen", topics.RAW_IMU.partitions, default=dict)


@app.task
async def _start_sink() -> None:
    await sink.start()


async def _decode_batch(events: Sequence[EventT], expect: type[Event]) -> list[tuple[EventT, Event]]:
    good: list[tuple[EventT, Event]] = []
    for ev in events:
        raw = ev.message.value
        try:
            event = decode(raw)
            if not isinstance(event, expect):
                raise DecodeError("wrong_topic", f"{event.kind} does not belong on {ev.message.topic}")
        except DecodeError as exc:
            await TOPICS[topics.DEAD_LETTER.name].send(
                key=ev.message.key,
                value=dead_letter(
                    source_topic=ev.message.topic, partition=ev.message.partition, offset=ev.message.offset,
                    key=ev.message.key, value=raw, reason=exc.reason, detail=exc.detail,
                ),
            )
            continue
        good.append((ev, event))
    return good


async def _batches(stream: faust.StreamT) -> AsyncIterator[Sequence[EventT]]:
    async for events in stream.noack_take(settings.sink_batch_max, within=settings.sink_flush_interval_s):
        yield events


def _ack(events: Sequence[EventT]) -> None:
    for ev in events:
        ev.ack()


@app.agent(TOPICS[topics.RAW_IMU.name])
async def archive_imu(stream: faust.StreamT) -> None:
    async for events in _batches(stream):
        decoded = await _decode_batch(events, ImuBatch)
        rows: list[tuple[Any, ...]] = []
        for ev, batch in decoded:
            assert isinstance(batch, ImuBatch)
            rows.append(imu_row(batch, ev.message.value))
        await sink.write([(IMU_BATCHES, rows)])
        latest: dict[str, dict[str, str]] = {}
        for _, batch in decoded:
            seen = latest.setdefault(batch.patient_id, dict(last_seen[batch.patient_id]))
            stamp = batch.t0.isoformat()
            if stamp > seen.get(batch.provenance.device_id, ""):
                seen[batch.provenance.device_id] = stamp
        for patient, seen in latest.items():
            if seen != last_seen[patient]:
                last_seen[patient] = seen
        _ack(events)


@app.agent(TOPICS[topics.RAW_ACTIVITY.name])
async def archive_activity(stream: faust.StreamT) -> None:
    async for events in _batches(stream):
        decoded = await _decode_batch(events, ActivityInterval)
        rows = [activity_row(iv) for _, iv in decoded if isinstance(iv, ActivityInterval)]
        spec: UpsertSpec = ACTIVITY_INTERVALS
        await sink.write([(spec, rows)])
        _ack(events)


@app.page("/tables/device-last-seen/")
class LastSeenView(View):
    """The table as this worker holds it (its partitions only), for operators and tests."""

    async def get(self, request: Request) -> Response:
        return self.json({k: v for k, v in last_seen.items()})


