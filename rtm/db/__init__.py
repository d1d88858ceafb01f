"""Database access shared by every part: connections and pools per least-privilege role."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import psycopg
from psycopg_pool import ConnectionPool

from rtm.settings import Settings, get_settings

Role = Literal["owner", "writer", "reader", "app"]
# The one name every part uses for a database connection in its type hints.
Conn: TypeAlias = psycopg.Connection[Any]


def connect(role: Role = "writer", settings: Settings | None = None, **kwargs: object) -> psycopg.Connection:
    s = settings or get_settings()
    return psycopg.connect(s.dsn(role), **kwargs)  # type: ignore[arg-type]


def pool(role: Role = "writer", settings: Settings | None = None, *, max_size: int | None = None,
         autocommit: bool = False, timeout_s: float = 30.0) -> ConnectionPool[Any]:
    """An open pool of connections as `role` (blocking until its first connection is up)."""
    s = settings or get_settings()
    p: ConnectionPool[Any] = ConnectionPool(s.dsn(role), min_size=1, max_size=max_size or s.pg_pool_max,
                                            open=False, kwargs={"autocommit": autocommit})
    p.open(wait=True, timeout=timeout_s)
    return p


def timescaledb_license(conn: psycopg.Connection) -> str:
    """'apache' or 'timescale': the code uses extra features only where the licence offers them."""
    row = conn.execute("show timescaledb.license").fetchone()
    return str(row[0]) if row else "apache"
