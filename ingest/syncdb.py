"""Synchronous connection pools (writer and reader roles) for the routes that reuse the processors'
synchronous code: therapist time (writer) and billing summaries (reader). Uploads never use them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from rtm.db import pool
from rtm.settings import Settings


class SyncPools:
    def __init__(
        self, writer: ConnectionPool[Any], reader: ConnectionPool[Any], acquire_timeout_s: float = 30.0
    ) -> None:
        self._writer = writer
        self._reader = reader
        self.acquire_timeout_s = acquire_timeout_s  # then PoolTimeout: the gateway answers 503

    @classmethod
    def open(cls, settings: Settings, max_size: int = 4, acquire_timeout_s: float = 30.0) -> SyncPools:
        """Blocking: call it from a worker thread at startup."""
        writer = pool("writer", settings, max_size=max_size, autocommit=True, timeout_s=15)
        try:
            reader = pool("reader", settings, max_size=max_size, autocommit=True, timeout_s=15)
        except Exception:
            writer.close()
            raise
        return cls(writer, reader, acquire_timeout_s)

    def close(self) -> None:
        self._writer.close()
        self._reader.close()

    @contextmanager
    def writer(self) -> Iterator[psycopg.Connection[Any]]:
        with self._writer.connection(timeout=self.acquire_timeout_s) as conn:
            yield conn

    @contextmanager
    def reader(self) -> Iterator[psycopg.Connection[Any]]:
        with self._reader.connection(timeout=self.acquire_timeout_s) as conn:
            yield conn
