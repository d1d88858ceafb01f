"""One transaction per batch of rows; every write an upsert on the table's unique key.

The caller acknowledges (and so lets the consumer commit) a batch's Kafka offsets only after
`write` has returned: the database has the data before the broker forgets it (at-least-once),
and the upsert makes the redelivered copy a no-op (exactly-once in effect).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from rtm.db import async_pool
from rtm.settings import Settings


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
        if self.update:
            action = sql.SQL("do update set ") + sql.SQL(", ").join(
                sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in self.update
            )
        else:
            action = sql.SQL("do nothing")
        return sql.SQL("insert into {t} ({cols}) values ({marks}) on conflict ({key}) ").format(
            t=sql.Identifier(self.table), cols=cols, marks=marks, key=key
        ) + action


class PostgresSink:
    def __init__(self, settings: Settings) -> None:
        self._pool: AsyncConnectionPool = async_pool("writer", settings)

    async def start(self) -> None:
        await self._pool.open(wait=True, timeout=30)

    async def stop(self) -> None:
        await self._pool.close()

    async def write(self, batches: Sequence[tuple[UpsertSpec, Sequence[Sequence[Any]]]]) -> int:
        """Write several tables' rows in one transaction; return the number of rows sent."""
        sent = 0
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            for spec, rows in batches:
                if rows:
                    await cur.executemany(spec.statement(), rows)
                    sent += len(rows)
        return sent
