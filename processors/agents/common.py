"""What every agent does with a batch: decode, dead-letter the bad, acknowledge after storing."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import faust
import psycopg
from faust.types import EventT

from processors import metrics
from processors.app import TOPICS, settings
from processors.deadletter import dead_letter
from processors.resilience import retry
from processors.sink.outbox import marks
from processors.sink.postgres import PostgresSink
from processors.sink.raw import Refused
from rtm import topics
from rtm.contract import DecodeError, Event, decode
from rtm.db import Conn

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
    value = dead_letter(
        source_topic=ev.message.topic, partition=ev.message.partition, offset=ev.message.offset,
        key=ev.message.key, value=ev.message.value, reason=reason, detail=detail,
    )

    async def send() -> None:
        await TOPICS[topics.DEAD_LETTER.name].send(key=ev.message.key, value=value)

    # The record is acknowledged only after this: a broker that is away delays it, never loses it.
    await retry("dead-letters", send, settings.retry_max_backoff_s)
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


Work = Callable[[Conn, list[E]], Sequence[Refused]]


async def _write(name: str, work: Work[E], decoded: Sequence[tuple[EventT[Any], E]]) -> Sequence[Refused]:
    """One transaction, retried with back-off while the database is away or the transaction lost a
    deadlock or serialization conflict (nothing is acknowledged meanwhile). The same transaction
    settles the gateway's outbox rows of these events (sink/outbox.py): stored, or refused by the
    sink itself and dead-lettered, either way republishing cannot change the answer."""
    items = [e for _, e in decoded]
    stored = marks([(e.id, ev.message.value) for ev, e in decoded])
    return await retry(name, lambda: sink.run_async(name, lambda conn: work(conn, items), len(items), stored),
                       settings.retry_max_backoff_s)


def _why(exc: Exception) -> tuple[str, str]:
    """The dead letter's reason and detail for an error storing one event."""
    if isinstance(exc, psycopg.Error):
        return "rejected_by_database", exc.diag.message_primary or type(exc).__name__
    return "processing_failed", f"{type(exc).__name__}: {exc}"


async def store(name: str, decoded: Sequence[tuple[EventT[Any], E]], work: Work[E]) -> set[uuid.UUID]:
    """Store a batch in one transaction. If that fails for good (the database refuses the batch, or
    the work raises on some event: transient errors were retried until they passed), store event
    by event and dead-letter each event that fails alone, so that one bad record cannot stop the
    stream; an error escaping here would end the agent with its batch unacknowledged, and the
    partition would stop committing. Events the sink refused itself (ownership) are
    dead-lettered too. Return the ids of the events not stored."""
    by_id = {event.id: ev for ev, event in decoded}
    not_stored: set[uuid.UUID] = set()
    try:
        refused = list(await _write(name, work, decoded))
    except Exception:
        refused = []
        for ev, event in decoded:
            try:
                refused += await _write(name, work, [(ev, event)])
            except Exception as exc:
                reason, detail = _why(exc)
                log.warning("%s: dead-lettered %s: %s", name, event.id, reason)  # the detail may hold data
                await send_dead_letter(ev, reason, detail)
                # Dead-lettered is settled too: republishing cannot make the database take it.
                settle = marks([(event.id, ev.message.value)])
                await retry("outbox", lambda s=settle: sink.run_async("outbox", lambda conn: None, 0, s),  # type: ignore[misc]
                            settings.retry_max_backoff_s)
                not_stored.add(event.id)
    for r in refused:
        log.warning("%s: refused %s: %s", name, r.event_id, r.detail)
        metrics.OWNERSHIP_REFUSED.labels(name).inc()
        await send_dead_letter(by_id[r.event_id], r.reason, r.detail)
        not_stored.add(r.event_id)
    return not_stored


def ack(events: Sequence[EventT[Any]]) -> None:
    now = time.time()
    for ev in events:
        ev.ack()
        metrics.PROCESSING_LATENCY.labels(ev.message.topic).observe(max(0.0, now - ev.message.timestamp))
