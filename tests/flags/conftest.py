"""Fixtures for the flag tests that need the session's real database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import psycopg
import pytest

from tests.flags.factory import Patient, new_patient


@pytest.fixture()
def make_patient(db: psycopg.Connection[Any]) -> Callable[..., Patient]:
    def make(start: date, **kwargs: Any) -> Patient:
        return new_patient(db, start, **kwargs)

    return make
