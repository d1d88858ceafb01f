"""Shared fixtures: the real local stack (started by the project's own scripts) and a fresh,
migrated test database per test session. Nothing here mocks the broker or the database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

from rtm.db.migrate import migrate
from rtm.settings import Settings, get_settings
from rtm.stack import postgres
from rtm.stack.broker import PrivateBroker


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    """The local stack, started by the project's own scripts: the shared database cluster (`rtm up`
    is idempotent) and a broker of this test session's own, so that tests never see another run's
    topics and consumer groups."""
    base = get_settings().model_copy(update={"app_id": f"rtm-test-{uuid.uuid4().hex[:6]}"})
    postgres.up(base)
    with PrivateBroker(base) as own:
        yield own.settings


@contextmanager
def fresh_database(stack_settings: Settings, tag: str) -> Iterator[Settings]:
    """Settings pointing at a fresh database of the shared cluster, migrated from scratch and
    dropped afterwards."""
    name = f"rtm_test_{tag}{uuid.uuid4().hex[:8]}"
    settings = stack_settings.model_copy(update={"pg_database": name})
    postgres.ensure_database(settings)
    migrate(settings)
    try:
        yield settings
    finally:
        with postgres.admin_connect(stack_settings) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def db_settings(stack_settings: Settings) -> Iterator[Settings]:
    """The session's database."""
    with fresh_database(stack_settings, "") as settings:
        yield settings


@pytest.fixture()
def db(db_settings: Settings) -> Iterator[psycopg.Connection]:
    """A writer-role connection to the test database (autocommit)."""
    with psycopg.connect(db_settings.dsn("writer"), autocommit=True) as conn:
        yield conn


@pytest.fixture()
def owner_db(db_settings: Settings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_settings.dsn("owner"), autocommit=True) as conn:
        yield conn
