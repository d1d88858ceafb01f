"""Settling the ingest gateway's outbox: an event the sink has stored is marked in the same
transaction that stores it, by event id and content digest, so that the gateway's relay stops
publishing it again (an older version of an edited record does not settle the newer one).
Events that did not come through the gateway match no row and cost one index probe each."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from rtm.contract.codec import content_digest
from rtm.db import Conn

Mark = tuple[uuid.UUID, bytes]  # (event id, content digest of the Kafka value)


def marks(items: Sequence[tuple[uuid.UUID, bytes | None]]) -> list[Mark]:
    """Marks for (event id, Kafka value) pairs, in a stable order (locks taken in one order)."""
    return sorted((eid, content_digest(value or b"")) for eid, value in items)


def mark_stored(conn: Conn, stored: Sequence[Mark]) -> None:
    if not stored:
        return
    conn.execute(
        """update ingest_outbox o set stored_at = now()
             from unnest(%s::uuid[], %s::bytea[]) as m(event_id, digest)
            where o.event_id = m.event_id and o.digest = m.digest and o.stored_at is null""",
        ([m[0] for m in stored], [m[1] for m in stored]),
    )
