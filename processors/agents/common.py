"""What every agent does with a batch: decode, dead-letter the bad, acknowledge after storing."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import faust
import psycopg
from faust.types import EventT

from processors import metrics
from processors.app import TOPICS, settings
from processors.deadletter import dead_letter
from processors.sink.outbox import marks
from processors.sink.postgres import Conn, PostgresSink
from rtm import topics
from rtm.contract import DecodeError, Event, decode

E = TypeVar("E", bound=Event)
log = logging.getLogger(__name__)

sink = PostgresSink(settings)


async def batches(stream: faust.StreamT[Any]) -> AsyncIterator[Sequence[EventT[Any]]]:
    """Batches of events, not yet acknowledged: the caller acks once the database has them."""
    async for events in stream.noack_take(  # type: ignore[attr-defined]
            settings.sink_batch_max, within=settings.sink_flush_interval_s):
        if events:
            metrics.EVENTS_IN.labels(events[0].message.topic).inc(len(events))
        yield events


async def send_dead_letter(ev: EventT[Any], reason: str, detail: str) -> None:
    await TOPICS[topics.DEAD_LETTER.name].send(
        key=ev.message.key,
        value=dead_letter(
            source_topic=ev.message.topic, partition=ev.message.partition, offset=ev.message.offset,
            key=ev.message.key, value=ev.message.value, reason=reason, detail=detail,
        ),
    )
    metrics.DEAD_LETTERS.labels(reason).inc()
    metrics.EVENTS_OUT.labels(topics.DEAD_LETTER.name).inc()


async def decode_batch(events: Sequence[EventT[Any]], expect: type[E]) -> list[tuple[EventT[Any], E]]:
    """Valid events of the expected kind; everything else goes to the dead-letter topic."""
    good: list[tuple[EventT[Any], E]] = []
    for ev in events:
        try:
            event = decode(ev.message.value or b"")
            if not isinstance(event, expect):
                raise DecodeError("wrong_topic", f"{event.kind} does not belong on {ev.message.topic}")
        except DecodeError as exc:
            await send_dead_letter(ev, exc.reason, exc.detail)
            continue
        good.append((ev, event))
    return good


async def store(name: str, decoded: Sequence[tuple[EventT[Any], E]], work: Callable[[Conn, list[E]], object]) -> None:
    """Store a batch in one transaction. While the database is unreachable, retry (nothing is
    acknowledged meanwhile); if it refuses the batch, store event by event and dead-letter each
    event it refuses, so that one bad record cannot stop the stream."""
    delay = 0.5
    while True:
        try:
            await sink.run_async(name, lambda conn: work(conn, [e for _, e in decoded]), len(decoded),
                                 stored=marks([(e.id, ev.message.value) for ev, e in decoded]))
            return
        except psycopg.OperationalError as exc:
            log.warning("database unavailable for %s (%s); retrying in %.1f s", name, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        except psycopg.Error:
            break
    for ev, event in decoded:
        try:
            await sink.run_async(name, lambda conn, e=event: work(conn, [e]), 1,  # type: ignore[misc]
                                 stored=marks([(event.id, ev.message.value)]))
        except psycopg.OperationalError:
            raise  # unreachable database mid-fallback: crash and be redelivered, never drop
        except psycopg.Error as exc:
            await send_dead_letter(ev, "rejected_by_database", exc.diag.message_primary or type(exc).__name__)
            # Dead-lettered is settled too: republishing cannot make the database take it.
            await sink.run_async("outbox", lambda conn: None, 0, stored=marks([(event.id, ev.message.value)]))


def ack(events: Sequence[EventT[Any]]) -> None:
    now = time.time()
    for ev in events:
        ev.ack()
        metrics.PROCESSING_LATENCY.labels(ev.message.topic).observe(max(0.0, now - ev.message.timestamp))
