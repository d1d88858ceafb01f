"""One transaction per batch; every write an upsert on the table's unique key.

The caller acknowledges (and so lets the consumer commit) a batch's Kafka offsets only after a
write has returned: the database has the data before the broker forgets it (at-least-once), and
the upserts make a redelivered copy a no-op (exactly-once in effect).

Writes are synchronous psycopg calls run in a worker thread (`asyncio.to_thread`), so that
database round trips and numpy work never block the stream's event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from psycopg_pool import ConnectionPool

from processors import metrics
from processors.sink.outbox import Mark, mark_stored
from rtm.db import Conn
from rtm.settings import Settings

T = TypeVar("T")


class PostgresSink:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool: ConnectionPool[Any] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Open the pool without waiting for the database: a worker starts (and reports itself not
        ready) while the database is down, and its first writes retry until it is back."""
        s = self._settings
        with self._lock:
            if self._pool is not None:
                return
            self._pool = ConnectionPool(s.dsn("writer"), min_size=1, max_size=s.pg_pool_max, open=False,
                                        timeout=s.pg_connect_timeout_s,
                                        kwargs={"connect_timeout": max(1, round(s.pg_connect_timeout_s))})
            self._pool.open(wait=False)

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def run(self, name: str, work: Callable[[Conn], T], rows: int = 0, stored: Sequence[Mark] = ()) -> T:
        """Run `work` in one transaction on a pooled writer connection; `stored` marks the
        gateway's outbox rows of the events this transaction stores (see sink/outbox.py)."""
        started = time.perf_counter()
        if self._pool is None:
            self.start()
        assert self._pool is not None
        with self._pool.connection() as conn, conn.transaction():
            result = work(conn)
            mark_stored(conn, stored)
        metrics.SINK_LATENCY.labels(name).observe(time.perf_counter() - started)
        metrics.SINK_BATCH_ROWS.labels(name).observe(rows)
        return result

    async def run_async(self, name: str, work: Callable[[Conn], T], rows: int = 0,
                        stored: Sequence[Mark] = ()) -> T:
        return await asyncio.to_thread(self.run, name, work, rows, stored)

