"""Database access shared by every part: connections and pools per least-privilege role."""

from __future__ import annotations

from typing import Literal

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from rtm.settings import Settings, get_settings

Role = Literal["owner", "writer", "reader"]


def connect(role: Role = "writer", settings: Settings | None = None, **kwargs: object) -> psycopg.Connection:
    s = settings or get_settings()
    return psycopg.connect(s.dsn(role), **kwargs)  # type: ignore[arg-type]


def pool(role: Role = "writer", settings: Settings | None = None) -> ConnectionPool:
    s = settings or get_settings()
    return ConnectionPool(s.dsn(role), min_size=1, max_size=s.pg_pool_max, open=True)


def async_pool(role: Role = "writer", settings: Settings | None = None) -> AsyncConnectionPool:
    s = settings or get_settings()
    return AsyncConnectionPool(s.dsn(role), min_size=1, max_size=s.pg_pool_max, open=False)


def timescaledb_license(conn: psycopg.Connection) -> str:
    """'apache' or 'timescale': the code uses extra features only where the licence offers them."""
    row = conn.execute("show timescaledb.license").fetchone()
    return str(row[0]) if row else "apache"
