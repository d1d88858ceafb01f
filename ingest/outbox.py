"""Durable acceptance: the transactional outbox and its relay.

An accepted event is written, with its dedup record, as an encoded Kafka message (topic, key,
value) into `ingest_outbox` in the request's transaction; the gateway answers 2xx after the
commit. The relay then gets it into Kafka and keeps doing so until the sink has stored it:

- fast path: right after the commit the request hands its rows to this process's relay, which
  publishes them from memory (no read-back) with acks=all;
- retry path: every relay scans for rows that are still not stored when their `next_attempt_at`
  comes (claimed with FOR UPDATE SKIP LOCKED and leased by moving `next_attempt_at` forward, so
  that several gateway replicas never publish the same row at once), and publishes them again
  with exponential back-off per row (`outbox_republish_after_s`, doubling up to
  `outbox_republish_max_s`). A broker that restarted empty (the local broker keeps topics in
  memory) thus gets every unstored event again; the sink's upserts make repeats harmless;
- publish failures back the relay off (doubling up to `outbox_failure_backoff_max_s`) and make it
  re-create missing topics with their partition counts before it publishes again;
- a broker that lost what it had acknowledged (the local broker keeps topics in memory; on Kafka,
  an unclean leader election) makes every unstored row due at once rather than after its
  back-off: the relay notices it when an acknowledged offset is lower than one acknowledged
  before in the same partition (offsets only grow in a log), or when a publish succeeds after
  failures;
- stored rows are pruned after `outbox_retention_s`; the depth and the age of the oldest
  unstored row are exported as metrics.

The relay runs as a background task of every gateway process: the gateway already holds the
producer and the database pool, the fast path needs the rows in memory, and every replica scanning
means no single relay to supervise (if no gateway runs, nothing is accepted either).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ingest.metrics import (
    OUTBOX_DEPTH,
    OUTBOX_FAILURES,
    OUTBOX_OLDEST_S,
    OUTBOX_PRUNED,
    OUTBOX_PUBLISHED,
    OUTBOX_REDUE,
)
from ingest.publisher import Outgoing, Publisher
from ingest.settings import GatewaySettings
from rtm.retrying import Backoff
from rtm.settings import Settings
from rtm.stack.broker import ensure_topics

log = logging.getLogger("ingest.outbox")


@dataclass(frozen=True)
class OutboxRow:
    event_id: uuid.UUID
    digest: bytes
    topic: str
    key: bytes
    value: bytes

    def outgoing(self) -> Outgoing:
        return Outgoing(self.topic, self.key, self.value)


def _columns(rows: Sequence[OutboxRow]) -> tuple[list[Any], ...]:
    return (
        [r.event_id for r in rows],
        [r.digest for r in rows],
        [r.topic for r in rows],
        [r.key for r in rows],
        [r.value for r in rows],
    )


async def write(conn: AsyncConnection[Any], rows: Sequence[OutboxRow], first_retry_s: float) -> None:
    """Insert (or, for a revision, replace) outbox rows inside the caller's transaction; the retry
    path first looks at them `first_retry_s` later (the fast path publishes them before)."""
    if not rows:
        return
    # Binary parameters: bytea arrays in the text format cost ~10x the CPU (hex escaping both ways).
    await conn.execute(
        """insert into ingest_outbox as o (event_id, digest, topic, key, value, next_attempt_at)
           select e, d, t, k, v, now() + make_interval(secs => %b)
             from unnest(%b::uuid[], %b::bytea[], %b::text[], %b::bytea[], %b::bytea[]) as u(e, d, t, k, v)
           on conflict (event_id) do update
              set digest = excluded.digest, topic = excluded.topic, key = excluded.key,
                  value = excluded.value, created_at = now(), attempts = 0,
                  next_attempt_at = excluded.next_attempt_at, published_at = null, stored_at = null
            where o.digest <> excluded.digest""",
        (first_retry_s, *_columns(sorted(rows, key=lambda r: r.event_id))),
    )


async def ensure_present(conn: AsyncConnection[Any], rows: Sequence[OutboxRow], first_retry_s: float) -> None:
    """For resends answered as duplicates: an event with no outbox row left (pruned after it was
    stored, or accepted before the outbox existed) is queued again, so that a resend always
    repairs a loss; downstream, a repeat of a stored event changes nothing."""
    if not rows:
        return
    await conn.execute(
        """insert into ingest_outbox (event_id, digest, topic, key, value, next_attempt_at)
           select e, d, t, k, v, now() + make_interval(secs => %b)
             from unnest(%b::uuid[], %b::bytea[], %b::text[], %b::bytea[], %b::bytea[]) as u(e, d, t, k, v)
           on conflict (event_id) do nothing""",
        (first_retry_s, *_columns(sorted(rows, key=lambda r: r.event_id))),
    )


_CLAIM = """
with due as (
    select event_id from ingest_outbox
     where stored_at is null and next_attempt_at <= now()
     order by next_attempt_at limit %(n)s
       for update skip locked
)
update ingest_outbox o
   set attempts = o.attempts + 1,
       next_attempt_at = now() + make_interval(secs => least(%(max)s, %(base)s * power(2, least(o.attempts, 20))))
  from due where o.event_id = due.event_id
returning o.event_id, o.digest, o.topic, o.key, o.value
"""


class Relay:
    def __init__(
        self, pool: AsyncConnectionPool, publisher: Publisher, settings: Settings, cfg: GatewaySettings
    ) -> None:
        self.pool = pool
        self.publisher = publisher
        self.settings = settings
        self.cfg = cfg
        self._queue: deque[OutboxRow] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._topics_ok = False
        self._broker_failed = False  # since the last successful publish
        self.depth = 0  # unstored rows at the last count (for back-pressure and metrics)

    # --- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._fast_loop(), name="outbox-fast"),
            asyncio.create_task(self._retry_loop(), name="outbox-retry"),
            asyncio.create_task(self._housekeeping_loop(), name="outbox-housekeeping"),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []

    def submit(self, rows: Sequence[OutboxRow]) -> None:
        """Hand committed rows to the fast path; beyond the queue bound the retry path takes them."""
        if len(self._queue) + len(rows) > self.cfg.outbox_fast_queue_max:
            return
        self._queue.extend(rows)
        self._wake.set()

    # --- publishing ---------------------------------------------------------------------------
    async def _publish(self, rows: list[OutboxRow], path: str) -> list[OutboxRow]:
        """Publish; return the rows the broker did not acknowledge."""
        try:
            if not self._topics_ok:
                await asyncio.wait_for(ensure_topics(self.settings), self.cfg.publish_timeout_s)
                self._topics_ok = True
        except Exception as exc:  # broker away: nothing was published
            log.warning("outbox relay: cannot check topics (%s)", type(exc).__name__)
            OUTBOX_FAILURES.inc(len(rows))
            self._broker_failed = True
            return rows
        acked = await self.publisher.publish([r.outgoing() for r in rows])
        failed = [r for r, ok in zip(rows, acked, strict=True) if not ok]
        OUTBOX_PUBLISHED.labels(path).inc(len(rows) - len(failed))
        if failed:
            OUTBOX_FAILURES.inc(len(failed))
            self._topics_ok = False  # the broker may have come back empty: check before the next try
            self._broker_failed = True
        if self.publisher.take_log_lost() or (self._broker_failed and not failed):
            self._broker_failed = True  # kept until the rows are due again (the database may fail)
            await self._all_due_now()
            self._broker_failed = bool(failed)
        return failed

    async def _all_due_now(self) -> None:
        """After a broker failure or a lost log: every unstored row is due now (module docstring)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "update ingest_outbox set next_attempt_at = now() "
                "where stored_at is null and next_attempt_at > now()"
            )
        log.info("outbox relay: the broker is back; %d unstored events due again", cur.rowcount)
        OUTBOX_REDUE.inc(max(cur.rowcount, 0))

    async def _defer(self, rows: list[OutboxRow], delay_s: float) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                # A publish the broker refused does not count: the republish back-off measures
                # how long published events went unstored, not how long the broker was away.
                "update ingest_outbox set next_attempt_at = now() + make_interval(secs => %s), "
                "attempts = greatest(attempts - 1, 0) where event_id = any(%s) and stored_at is null",
                (delay_s, [r.event_id for r in rows]),
            )

    async def _fast_loop(self) -> None:
        backoff = Backoff(self.cfg.outbox_failure_backoff_s, self.cfg.outbox_failure_backoff_max_s)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                rows = [self._queue.popleft() for _ in range(min(len(self._queue), self.cfg.outbox_batch))]
                try:
                    failed = await self._publish(rows, "fast")
                    if failed:
                        # The retry path owns them from here on, after the back-off.
                        await self._defer(failed, backoff.next())
                    else:
                        backoff.reset()
                except Exception as exc:  # the rows are safe in the outbox; retry path
                    log.warning("fast path failed (%s); the retry path takes over", type(exc).__name__)
                    self._queue.clear()
                    await asyncio.sleep(backoff.next())

    async def _claim(self) -> list[OutboxRow]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                _CLAIM,
                {
                    "n": self.cfg.outbox_batch,
                    "base": self.cfg.outbox_republish_after_s,
                    "max": self.cfg.outbox_republish_max_s,
                },
                binary=True,
            )
            return [OutboxRow(*r) for r in await cur.fetchall()]

    async def _retry_loop(self) -> None:
        backoff = Backoff(self.cfg.outbox_failure_backoff_s, self.cfg.outbox_failure_backoff_max_s)
        while True:
            try:
                rows = await self._claim()
                if rows:
                    failed = await self._publish(rows, "retry")
                    ok = {r.event_id for r in rows} - {r.event_id for r in failed}
                    if ok:
                        async with self.pool.connection() as conn:
                            await conn.execute(
                                "update ingest_outbox set published_at = now() where event_id = any(%s)",
                                (list(ok),),
                            )
                    if failed:
                        delay = backoff.next()
                        await self._defer(failed, delay)
                        await asyncio.sleep(delay)
                        continue
                    backoff.reset()
                    if len(rows) == self.cfg.outbox_batch:
                        continue  # more are due
            except Exception as exc:  # database or broker away: back off, never die
                delay = backoff.next()
                log.warning("outbox relay: %s; retrying in %.1f s", type(exc).__name__, delay)
                self._topics_ok = False
                await asyncio.sleep(delay)
                continue
            await asyncio.sleep(self.cfg.outbox_poll_s)

    async def _housekeeping_loop(self) -> None:
        while True:
            try:
                async with self.pool.connection() as conn:
                    cur = await conn.execute(
                        "select ingest_outbox_prune(make_interval(secs => %s), %s)",
                        (self.cfg.outbox_retention_s, self.cfg.outbox_prune_batch),
                    )
                    row = await cur.fetchone()
                    OUTBOX_PRUNED.inc(int(row[0]) if row else 0)
                    cur = await conn.execute(
                        "select count(*), coalesce(extract(epoch from now() - min(created_at)), 0) "
                        "from ingest_outbox where stored_at is null"
                    )
                    row = await cur.fetchone()
                if row is not None:
                    self.depth = int(row[0])
                    OUTBOX_DEPTH.set(self.depth)
                    OUTBOX_OLDEST_S.set(float(row[1]))
            except Exception as exc:  # metrics and pruning wait for the database
                log.warning("outbox housekeeping: %s", type(exc).__name__)
            await asyncio.sleep(self.cfg.outbox_stats_interval_s)
