"""The app's database access: one pool of the app role; every request runs in one transaction with
its clinic set, so that row-level security (migration 0600) confines it to that clinic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool

from rtm.settings import Settings

Conn = psycopg.Connection[Any]


def _configure(conn: Conn) -> None:
    # orjson parses the answers' JSON several times faster than the standard library (the billing
    # view reads one per result of the month).
    set_json_loads(orjson.loads, conn)


class AppDb:
    def __init__(self, settings: Settings, max_size: int = 8) -> None:
        self.settings = settings
        self.pool: ConnectionPool[Any] = ConnectionPool(
            settings.dsn("app"), min_size=1, max_size=max_size, open=False, kwargs={"autocommit": False},
            configure=_configure,
        )

    def open(self) -> None:
        self.pool.open(wait=True, timeout=30)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def clinic(self, clinic_id: str, actor: str) -> Iterator[Conn]:
        """A transaction that sees `clinic_id`'s rows only; `actor` is what the audit triggers record.
        Both settings are local to the transaction, so a pooled connection carries nothing over."""
        with self.pool.connection() as conn:
            conn.execute(
                "select set_config('rtm.clinic', %s, true), set_config('rtm.actor', %s, true)", (clinic_id, actor)
            )
            yield conn

    @contextmanager
    def anonymous(self) -> Iterator[Conn]:
        """No clinic set: sign-in and sessions only (staff and session tables); patient data is invisible."""
        with self.pool.connection() as conn:
            yield conn
