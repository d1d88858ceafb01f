"""The accept step every upload route ends in: dedup by event id, publish what is new, wait for
the broker's acknowledgements, then record the acknowledged ids.

Crash window: the dedup record is written after the acknowledgement, so a gateway that dies in
between has published events it never recorded; the client saw no 2xx and resends; the events
are published again and the downstream sinks (idempotent upserts keyed by event id) absorb the
repeat. The reverse — recorded but not in Kafka — cannot happen.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingest.metrics import EVENTS, SAMPLES
from ingest.problems import Problem, retry_after
from ingest.publisher import Outgoing, Publisher
from ingest.store import AcceptedRow, Store
from ingest.validation import ItemError, batch_problem
from rtm.contract import ActivityInterval, Event, ImuBatch, encode
from rtm.topics import TOPIC_BY_KIND

log = logging.getLogger("ingest.accept")


@dataclass(frozen=True)
class Result:
    index: int
    event_id: uuid.UUID
    status: str  # accepted | duplicate

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "event_id": str(self.event_id), "status": self.status}


def digest(value: bytes) -> bytes:
    return hashlib.blake2b(value, digest_size=16).digest()


def _row(event: Event, d: bytes) -> AcceptedRow:
    start = end = None
    if isinstance(event, ActivityInterval):  # kept so that an id-only deletion can be resolved
        start, end = event.start, event.end
    return AcceptedRow(event.id, d, event.kind, start, end)


async def accept(
    store: Store, publisher: Publisher, events: Sequence[Event], retry_after_s: int
) -> list[Result]:
    values = [encode(e) for e in events]
    digests = [digest(v) for v in values]
    try:
        known = await store.accepted([e.id for e in events])
    except Exception as exc:  # dedup is an optimisation; downstream upserts are the guarantee
        log.warning("dedup lookup failed (%s): publishing without it", type(exc).__name__)
        known = {}
    results: list[Result] = []
    fresh: list[int] = []
    in_request: dict[uuid.UUID, tuple[int, bytes]] = {}
    for i, (event, d) in enumerate(zip(events, digests, strict=True)):
        row = known.get(event.id)
        first = in_request.setdefault(event.id, (i, d))
        if first[0] != i and first[1] != d:
            raise batch_problem(
                [
                    ItemError(
                        i, "conflicting-duplicate", f"same event id as item {first[0]} but other content"
                    )
                ],
                len(events),
            )
        if (row is not None and row.digest == d) or first[0] != i:
            results.append(Result(i, event.id, "duplicate"))
        else:
            results.append(Result(i, event.id, "accepted"))
            fresh.append(i)
    outgoing = [Outgoing(TOPIC_BY_KIND[events[i].kind].name, events[i].key(), values[i]) for i in fresh]
    acked = await publisher.publish(outgoing)
    done = [i for i, ok in zip(fresh, acked, strict=True) if ok]
    try:
        await store.record_accepted([_row(events[i], digests[i]) for i in done])
    except Exception as exc:  # the events are durable in Kafka: still a success
        log.warning(
            "recording accepted ids failed (%s); a resend will publish them again", type(exc).__name__
        )
    for i in done:
        e = events[i]
        EVENTS.labels(e.kind, "accepted").inc()
        if isinstance(e, ImuBatch):
            SAMPLES.inc(e.n_samples)
    for r in results:
        if r.status == "duplicate":
            EVENTS.labels(events[r.index].kind, "duplicate").inc()
    if len(done) < len(fresh):
        raise Problem(
            503,
            "broker-unavailable",
            "the broker did not acknowledge every event in time; resend the whole request "
            "(events already stored will be acknowledged as duplicates)",
            headers=retry_after(retry_after_s),
            extra={"acknowledged": len(done) + len(results) - len(fresh), "total": len(events)},
        )
    return results


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
