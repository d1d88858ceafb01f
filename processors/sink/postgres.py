"""One transaction per batch; every write an upsert on the table's unique key.

The caller acknowledges (and so lets the consumer commit) a batch's Kafka offsets only after a
write has returned: the database has the data before the broker forgets it (at-least-once), and
the upserts make a redelivered copy a no-op (exactly-once in effect).

Writes are synchronous psycopg calls run in a worker thread (`asyncio.to_thread`), so that
database round trips and numpy work never block the stream's event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from processors import metrics
from processors.sink.outbox import Mark, mark_stored
from rtm.db import pool
from rtm.settings import Settings

T = TypeVar("T")
Conn = psycopg.Connection[Any]


class PostgresSink:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool: ConnectionPool[Any] | None = None

    def start(self) -> None:
        self._pool = pool("writer", self._settings)

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def run(self, name: str, work: Callable[[Conn], T], rows: int = 0, stored: Sequence[Mark] = ()) -> T:
        """Run `work` in one transaction on a pooled writer connection; `stored` marks the
        gateway's outbox rows of the events this transaction stores (see sink/outbox.py)."""
        started = time.perf_counter()
        if self._pool is None:
            raise RuntimeError("the sink is not started")
        with self._pool.connection() as conn, conn.transaction():
            result = work(conn)
            mark_stored(conn, stored)
        metrics.SINK_LATENCY.labels(name).observe(time.perf_counter() - started)
        metrics.SINK_BATCH_ROWS.labels(name).observe(rows)
        return result

    async def run_async(self, name: str, work: Callable[[Conn], T], rows: int = 0,
                        stored: Sequence[Mark] = ()) -> T:
        return await asyncio.to_thread(self.run, name, work, rows, stored)

