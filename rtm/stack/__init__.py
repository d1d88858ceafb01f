"""The embedded local stack: PostgreSQL + TimescaleDB and the Tansu broker, on 127.0.0.1."""

from __future__ import annotations

from rtm.settings import Settings
from rtm.stack import broker, postgres
from rtm.stack.postgres import StackError

__all__ = ["StackError", "down", "status", "up"]


def up(settings: Settings) -> list[str]:
    return [postgres.up(settings).detail, broker.up(settings).detail]


def down(settings: Settings, purge: bool = False) -> None:
    broker.down(settings)
    if purge:
        postgres.destroy(settings)
    else:
        postgres.down(settings)


def status(settings: Settings) -> dict[str, tuple[bool, str]]:
    pg, kb = postgres.status(settings), broker.status(settings)
    return {"database": (pg.running, pg.detail), "broker": (kb.running, kb.detail)}
