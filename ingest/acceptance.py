"""The accept step every upload route ends in: dedup by event id, then make what is new durable.

Two modes (`RTM_GATEWAY_ACCEPTANCE`, see docs/ingest.md):

- `outbox` (default): in ONE database transaction, the dedup records are locked or inserted and
  the encoded events written to the outbox; 2xx after the commit; the relay (ingest/outbox.py)
  publishes them until the sink has stored them. A broker that is down or restarts empty delays
  events, never loses them; a database that is down gets 503.
- `broker`: publish, wait for the broker's acknowledgement (acks=all), then record the dedup row;
  for Apache Kafka with replicated topics. Crash window: a gateway dying between acknowledgement
  and record has published events it did not record; the client resends and the idempotent
  sinks absorb the repeat.

In both, the same id with other content is a revision where the contract allows edits (activity
intervals: an edited or withdrawn phone record) and 409 `conflicting-event` otherwise.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from ingest import outbox
from ingest.metrics import EVENTS, SAMPLES
from ingest.outbox import OutboxRow, Relay
from ingest.problems import Problem, retry_after
from ingest.publisher import Outgoing, Publisher
from ingest.settings import GatewaySettings
from ingest.store import AcceptedRow, Store
from ingest.validation import ItemError, batch_problem
from rtm.contract import ActivityInterval, Event, ImuBatch, encode
from rtm.contract.codec import content_digest
from rtm.topics import TOPIC_BY_KIND

log = logging.getLogger("ingest.accept")


@dataclass(frozen=True)
class Result:
    index: int
    event_id: uuid.UUID
    status: str  # accepted | duplicate

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "event_id": str(self.event_id), "status": self.status}


digest = content_digest

# Kinds whose source may edit or withdraw a record under the same id (the sink replaces it).
REVISABLE_KINDS = frozenset({"activity_interval"})


def _row(event: Event, d: bytes) -> AcceptedRow:
    start = end = None
    if isinstance(event, ActivityInterval):  # kept so that an id-only deletion can be resolved
        start, end = event.start, event.end
    return AcceptedRow(event.id, d, event.kind, start, end)


@dataclass(frozen=True)
class _Plan:
    results: list[Result]
    fresh: list[int]  # indexes to make durable (new events and revisions)
    repeats: list[int]  # first occurrences of events already accepted with this content


def _plan(events: Sequence[Event], digests: Sequence[bytes], known: dict[uuid.UUID, AcceptedRow]) -> _Plan:
    results: list[Result] = []
    fresh: list[int] = []
    repeats: list[int] = []
    conflicts: list[ItemError] = []
    in_request: dict[uuid.UUID, tuple[int, bytes]] = {}
    for i, (event, d) in enumerate(zip(events, digests, strict=True)):
        row = known.get(event.id)
        first = in_request.setdefault(event.id, (i, d))
        if first[0] != i and first[1] != d:
            raise batch_problem(
                [ItemError(i, "conflicting-duplicate", f"same event id as item {first[0]} but other content")],
                len(events),
            )
        if first[0] != i:
            results.append(Result(i, event.id, "duplicate"))
        elif row is not None and row.digest == d:
            results.append(Result(i, event.id, "duplicate"))
            repeats.append(i)
        elif row is not None and event.kind not in REVISABLE_KINDS:
            conflicts.append(
                ItemError(
                    i,
                    "conflicting-event",
                    f"event {event.id} was accepted earlier with other content; a {event.kind} cannot be "
                    "replaced (send new data under its own id)",
                )
            )
        else:
            results.append(Result(i, event.id, "accepted"))
            fresh.append(i)
    if conflicts:
        raise Problem(
            409,
            "conflicting-event",
            f"{len(conflicts)} of {len(events)} events reuse the id of an accepted event with other content; "
            "nothing in this request was accepted",
            errors=[c.as_dict() for c in conflicts[:100]],
            extra={"rejected": len(conflicts), "total": len(events)},
        )
    return _Plan(results, fresh, repeats)


def _count(events: Sequence[Event], plan: _Plan, done: Sequence[int]) -> None:
    for i in done:
        e = events[i]
        EVENTS.labels(e.kind, "accepted").inc()
        if isinstance(e, ImuBatch):
            SAMPLES.inc(e.n_samples)
    for r in plan.results:
        if r.status == "duplicate":
            EVENTS.labels(events[r.index].kind, "duplicate").inc()


async def accept(
    store: Store, publisher: Publisher, relay: Relay | None, cfg: GatewaySettings, events: Sequence[Event]
) -> list[Result]:
    """Accept a validated batch (all or nothing); `relay` None means the `broker` mode."""
    values = [encode(e) for e in events]
    digests = [digest(v) for v in values]
    if relay is None:
        return await _accept_via_broker(store, publisher, cfg.retry_after_s, events, values, digests)
    if relay.depth >= cfg.outbox_max_depth:
        raise Problem(
            503,
            "backlog",
            f"{relay.depth} accepted events wait to be stored; resend later",
            headers=retry_after(cfg.retry_after_s),
        )
    rows = [
        OutboxRow(e.id, d, TOPIC_BY_KIND[e.kind].name, e.key(), v)
        for e, d, v in zip(events, digests, values, strict=True)
    ]
    async with store.pool.connection() as conn, conn.transaction():
        known = await _lock_known(conn, [e.id for e in events])
        plan = _plan(events, digests, known)
        await _record(conn, [_row(events[i], digests[i]) for i in plan.fresh], known)
        await outbox.write(conn, [rows[i] for i in plan.fresh], cfg.outbox_republish_after_s)
        await outbox.ensure_present(conn, [rows[i] for i in plan.repeats], cfg.outbox_republish_after_s)
    relay.submit([rows[i] for i in plan.fresh])
    _count(events, plan, plan.fresh)
    return plan.results


async def _lock_known(conn: AsyncConnection[Any], ids: list[uuid.UUID]) -> dict[uuid.UUID, AcceptedRow]:
    cur = await conn.execute(
        """select event_id, digest, kind, start_time, end_time from ingest_accepted_events
            where event_id = any(%s) order by event_id for update""",
        (sorted(set(ids)),),
    )
    return {r[0]: AcceptedRow(*r) for r in await cur.fetchall()}


async def _record(
    conn: AsyncConnection[Any], rows: list[AcceptedRow], known: dict[uuid.UUID, AcceptedRow]
) -> None:
    """Insert new dedup records and update revised ones (locked by `_lock_known`). A new id that
    another request inserted meanwhile is refused with 503: the resend then sees it."""
    rows = sorted(rows, key=lambda r: r.event_id)
    new = [r for r in rows if r.event_id not in known]
    revised = [r for r in rows if r.event_id in known]
    if new:
        cur = await conn.execute(
            """insert into ingest_accepted_events (event_id, digest, kind, start_time, end_time)
               select * from unnest(%s::uuid[], %s::bytea[], %s::text[], %s::timestamptz[], %s::timestamptz[])
               on conflict (event_id) do nothing returning event_id""",
            _dedup_columns(new),
        )
        if len(await cur.fetchall()) != len(new):
            raise Problem(
                503,
                "concurrent-upload",
                "another request is uploading the same events right now; resend",
                headers=retry_after(1),
            )
    if revised:
        await conn.execute(
            """update ingest_accepted_events a
                  set digest = u.d, accepted_at = now(), start_time = coalesce(u.s, a.start_time),
                      end_time = coalesce(u.e, a.end_time)
                 from unnest(%s::uuid[], %s::bytea[], %s::text[], %s::timestamptz[], %s::timestamptz[])
                      as u(id, d, k, s, e)
                where a.event_id = u.id""",
            _dedup_columns(revised),
        )


def _dedup_columns(rows: Sequence[AcceptedRow]) -> tuple[list[Any], ...]:
    return (
        [r.event_id for r in rows],
        [r.digest for r in rows],
        [r.kind for r in rows],
        [r.start for r in rows],
        [r.end for r in rows],
    )


async def _accept_via_broker(
    store: Store,
    publisher: Publisher,
    retry_after_s: int,
    events: Sequence[Event],
    values: Sequence[bytes],
    digests: Sequence[bytes],
) -> list[Result]:
    try:
        known = await store.accepted([e.id for e in events])
    except Exception as exc:  # dedup is an optimisation here; downstream upserts are the guarantee
        log.warning("dedup lookup failed (%s): publishing without it", type(exc).__name__)
        known = {}
    plan = _plan(events, digests, known)
    outgoing = [Outgoing(TOPIC_BY_KIND[events[i].kind].name, events[i].key(), values[i]) for i in plan.fresh]
    acked = await publisher.publish(outgoing)
    done = [i for i, ok in zip(plan.fresh, acked, strict=True) if ok]
    try:
        await store.record_accepted([_row(events[i], digests[i]) for i in done])
    except Exception as exc:  # the events are durable in Kafka: still a success
        log.warning(
            "recording accepted ids failed (%s); a resend will publish them again", type(exc).__name__
        )
    _count(events, plan, done)
    if len(done) < len(plan.fresh):
        raise Problem(
            503,
            "broker-unavailable",
            "the broker did not acknowledge every event in time; resend the whole request "
            "(events already stored will be acknowledged as duplicates)",
            headers=retry_after(retry_after_s),
            extra={"acknowledged": len(done) + len(plan.results) - len(plan.fresh), "total": len(events)},
        )
    return plan.results


def summary(
    results: Sequence[Result],
    request_id: str,
    pointers: Sequence[str] | None = None,
    extra: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    accepted = sum(1 for r in results if r.status == "accepted")
    listed = [r.as_dict() for r in results]
    if pointers is not None:
        for item in listed:
            item["pointer"] = pointers[item["index"]]
    return {
        "request_id": request_id,
        "accepted": accepted,
        "duplicates": len(results) - accepted,
        "results": [*listed, *extra],
    }
