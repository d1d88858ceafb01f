"""Fixtures of the pipeline tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from psycopg import sql

from rtm.db.migrate import migrate
from rtm.settings import Settings
from rtm.stack import postgres


@pytest.fixture(scope="module")
def module_db(stack_settings: Settings) -> Iterator[Settings]:
    """A migrated database of the module's own (dropped afterwards), for modules that run a broker
    of their own: what they store must not change the session database other modules compare
    their replays with."""
    name = f"rtm_test_m_{uuid.uuid4().hex[:8]}"
    settings = stack_settings.model_copy(update={"pg_database": name})
    postgres.ensure_database(settings)
    migrate(settings)
    yield settings
    with postgres.admin_connect(stack_settings) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
