"""Synchronous connection pools (writer and reader roles) for the routes that reuse the processors'
synchronous code: therapist time (writer) and billing summaries (reader). Uploads never use them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from rtm.settings import Settings


class SyncPools:
    def __init__(self, writer: ConnectionPool[Any], reader: ConnectionPool[Any]) -> None:
        self._writer = writer
        self._reader = reader

    @classmethod
    def open(cls, settings: Settings, max_size: int = 4) -> SyncPools:
        """Blocking: call it from a worker thread at startup."""
        pools = [
            ConnectionPool(
                settings.dsn(role), min_size=1, max_size=max_size, open=False, kwargs={"autocommit": True}
            )
            for role in ("writer", "reader")
        ]
        try:
            for pool in pools:
                pool.open(wait=True, timeout=15)
        except Exception:
            for pool in pools:
                pool.close()
            raise
        return cls(*pools)

    def close(self) -> None:
        self._writer.close()
        self._reader.close()

    @contextmanager
    def writer(self) -> Iterator[psycopg.Connection[Any]]:
        with self._writer.connection() as conn:
            yield conn

    @contextmanager
    def reader(self) -> Iterator[psycopg.Connection[Any]]:
        with self._reader.connection() as conn:
            yield conn
