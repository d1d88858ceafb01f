"""The hub's spool: canonical events waiting for upload, in a SQLite file that survives power loss.

WAL journal with synchronous=FULL: a committed event is on disk (fsync) before it is acknowledged
to the producer, and a torn write rolls back to the last commit. The spool is bounded in bytes;
when full, the OLDEST events are evicted and every eviction is recorded in `evictions` (and
counted) so the loss is visible to the health report and the operator, never silent. Event ids
are unique: spooling the same event twice keeps one copy.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
create table if not exists events (
  seq integer primary key autoincrement,
  event_id text not null unique,
  device_id text not null,
  kind text not null,
  body blob not null,
  size integer not null,
  spooled_at real not null
);
create table if not exists evictions (
  at real not null, device_id text not null, event_id text not null, kind text not null, size integer not null
);
create table if not exists rejections (
  at real not null, device_id text not null, event_id text not null, status integer not null, reason text not null
);
"""


@dataclass(frozen=True)
class Spooled:
    seq: int
    event_id: str
    device_id: str
    kind: str
    body: bytes


class Spool:
    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("pragma journal_mode=wal")
        self.db.execute("pragma synchronous=full")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def put(self, items: list[tuple[str, str, str, bytes]]) -> int:
        """Spool (event_id, device_id, kind, body) items in one transaction; returns how many were new.
        Evicts the oldest events if the spool would exceed its bound."""
        now = time.time()
        with self._tx():
            before = self.db.total_changes
            self.db.executemany(
                "insert or ignore into events (event_id, device_id, kind, body, size, spooled_at) "
                "values (?, ?, ?, ?, ?, ?)",
                [(e, d, k, b, len(b), now) for e, d, k, b in items],
            )
            added = self.db.total_changes - before
            self._evict(now)
        return added

    def _evict(self, now: float) -> None:
        total = self.bytes()
        if total <= self.max_bytes:
            return
        excess = total - self.max_bytes
        rows = self.db.execute(
            "select seq, device_id, event_id, kind, size, sum(size) over (order by seq) from events order by seq"
        ).fetchall()
        doomed = [r for r in rows if r[5] - r[4] < excess]
        self.db.executemany("insert into evictions values (?, ?, ?, ?, ?)",
                            [(now, r[1], r[2], r[3], r[4]) for r in doomed])
        self.db.executemany("delete from events where seq = ?", [(r[0],) for r in doomed])

    def _tx(self) -> _Tx:
        return _Tx(self.db)

    def peek(self, limit: int, device_id: str | None = None) -> list[Spooled]:
        sql = "select seq, event_id, device_id, kind, body from events"
        args: tuple[object, ...] = ()
        if device_id is not None:
            sql += " where device_id = ?"
            args = (device_id,)
        rows = self.db.execute(sql + " order by seq limit ?", (*args, limit)).fetchall()
        return [Spooled(*r) for r in rows]

    def ack(self, event_ids: list[str]) -> None:
        with self._tx():
            self.db.executemany("delete from events where event_id = ?", [(e,) for e in event_ids])

    def reject(self, device_id: str, items: list[tuple[str, int, str]]) -> None:
        """Events the gateway refused for good (4xx): kept as a record with the reason, not retried."""
        now = time.time()
        with self._tx():
            self.db.executemany("insert into rejections values (?, ?, ?, ?, ?)",
                                [(now, device_id, e, s, r) for e, s, r in items])
            self.db.executemany("delete from events where event_id = ?", [(e,) for e, _, _ in items])

    def depth(self) -> int:
        return int(self.db.execute("select count(*) from events").fetchone()[0])

    def bytes(self) -> int:
        return int(self.db.execute("select coalesce(sum(size), 0) from events").fetchone()[0])

    def evicted(self) -> int:
        return int(self.db.execute("select count(*) from evictions").fetchone()[0])

    def rejected(self) -> int:
        return int(self.db.execute("select count(*) from rejections").fetchone()[0])

    def devices(self) -> list[str]:
        return [r[0] for r in self.db.execute("select distinct device_id from events")]


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("begin immediate")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("rollback" if exc_type else "commit")
