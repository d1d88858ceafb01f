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
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from processors import metrics
from rtm.settings import Settings

T = TypeVar("T")
Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class UpsertSpec:
    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    update: tuple[str, ...] = ()  # empty: a repeat is identical, keep the first copy

    def statement(self) -> sql.Composed:
        cols = sql.SQL(", ").join(map(sql.Identifier, self.columns))
        marks = sql.SQL(", ").join(sql.Placeholder() * len(self.columns))
        key = sql.SQL(", ").join(map(sql.Identifier, self.key))
        action: sql.Composable
        if self.update:
            changed = sql.SQL(", ").join(sql.SQL("{t}.{c}").format(t=sql.Identifier(self.table), c=sql.Identifier(c))
                                         for c in self.update)
            incoming = sql.SQL(", ").join(sql.SQL("excluded.{c}").format(c=sql.Identifier(c)) for c in self.update)
            action = sql.SQL("do update set ") + sql.SQL(", ").join(
                sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in self.update
            ) + sql.SQL(" where ({changed}) is distinct from ({incoming})").format(changed=changed, incoming=incoming)
        else:
            action = sql.SQL("do nothing")
        return sql.SQL("insert into {t} ({cols}) values ({marks}) on conflict ({key}) ").format(
            t=sql.Identifier(self.table), cols=cols, marks=marks, key=key
        ) + action


class PostgresSink:
    def __init__(self, settings: Settings) -> None:
        self._pool = ConnectionPool(settings.dsn("writer"), min_size=1, max_size=settings.pg_pool_max, open=False,
                                    kwargs={"autocommit": False})

    def start(self) -> None:
        self._pool.open(wait=True, timeout=30)

    def stop(self) -> None:
        self._pool.close()

    def run(self, name: str, work: Callable[[Conn], T], rows: int = 0) -> T:
        """Run `work` in one transaction on a pooled writer connection."""
        started = time.perf_counter()
        with self._pool.connection() as conn, conn.transaction():
            result = work(conn)
        metrics.SINK_LATENCY.labels(name).observe(time.perf_counter() - started)
        metrics.SINK_BATCH_ROWS.labels(name).observe(rows)
        return result

    async def run_async(self, name: str, work: Callable[[Conn], T], rows: int = 0) -> T:
        return await asyncio.to_thread(self.run, name, work, rows)


def upsert(conn: Conn, spec: UpsertSpec, rows: Sequence[Sequence[Any]]) -> None:
    if rows:
        with conn.cursor() as cur:
            cur.executemany(spec.statement(), rows)
