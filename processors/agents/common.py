"""What every agent does with a batch: decode, dead-letter the bad, acknowledge after storing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

import faust
from faust.types import EventT

from processors import metrics
from processors.app import TOPICS, settings
from processors.deadletter import dead_letter
from processors.sink.postgres import PostgresSink
from rtm import topics
from rtm.contract import DecodeError, Event, decode

E = TypeVar("E", bound=Event)

sink = PostgresSink(settings)


async def batches(stream: faust.StreamT) -> AsyncIterator[Sequence[EventT]]:
    """Batches of events, not yet acknowledged: the caller acks once the database has them."""
    async for events in stream.noack_take(settings.sink_batch_max, within=settings.sink_flush_interval_s):
        if events:
            metrics.EVENTS_IN.labels(events[0].message.topic).inc(len(events))
        yield events


async def decode_batch(events: Sequence[EventT], expect: type[E]) -> list[tuple[EventT, E]]:
    """Valid events of the expected kind; everything else goes to the dead-letter topic."""
    good: list[tuple[EventT, E]] = []
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
            metrics.DEAD_LETTERS.labels(exc.reason).inc()
            metrics.EVENTS_OUT.labels(topics.DEAD_LETTER.name).inc()
            continue
        good.append((ev, event))
    return good


def ack(events: Sequence[EventT]) -> None:
    now = time.time()
    for ev in events:
        ev.ack()
        metrics.PROCESSING_LATENCY.labels(ev.message.topic).observe(max(0.0, now - ev.message.timestamp))
