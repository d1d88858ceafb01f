"""Fixtures for the eligibility tests: a scenario builder on the session's real database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.eligibility.factory import Scenario


@pytest.fixture()
def scenario(db: psycopg.Connection[Any]) -> Callable[..., Scenario]:
    def make(**kwargs: Any) -> Scenario:
        return Scenario(db, **kwargs)

    return make
