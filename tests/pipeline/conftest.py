"""Fixtures of the pipeline tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rtm.settings import Settings
from tests.conftest import fresh_database


@pytest.fixture(scope="module")
def module_db(stack_settings: Settings) -> Iterator[Settings]:
    """A migrated database of the module's own (dropped afterwards), for modules that run a broker
    of their own: what they store must not change the session database other modules compare
    their replays with."""
    with fresh_database(stack_settings, "m_") as settings:
        yield settings
