"""The shared patient-local time rule: scalar, vectorised and SQL forms agree on the same vectors."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from rtm.localtime import TzHistory, day_index_to_date

UTC = dt.UTC


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


NY = [(at(2025, 1, 1), "America/New_York")]
MOVE = [(at(2026, 1, 1), "Europe/London"), (at(2026, 5, 1, 12), "Asia/Tokyo")]

# (history, instant, zone in force, local date)
VECTORS = [
    # DST start in New York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC)
    (NY, at(2026, 3, 8, 4, 59), "America/New_York", dt.date(2026, 3, 7)),  # 23:59 EST
    (NY, at(2026, 3, 8, 5, 0), "America/New_York", dt.date(2026, 3, 8)),  # 00:00 EST
    (NY, at(2026, 3, 9, 3, 59), "America/New_York", dt.date(2026, 3, 8)),  # 23:59 EDT
    (NY, at(2026, 3, 9, 4, 0), "America/New_York", dt.date(2026, 3, 9)),  # 00:00 EDT
    # DST end in New York: 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC)
    (NY, at(2026, 11, 1, 3, 59), "America/New_York", dt.date(2026, 10, 31)),  # 23:59 EDT
    (NY, at(2026, 11, 1, 4, 0), "America/New_York", dt.date(2026, 11, 1)),  # 00:00 EDT
    (NY, at(2026, 11, 2, 4, 59), "America/New_York", dt.date(2026, 11, 1)),  # 23:59 EST
    (NY, at(2026, 11, 2, 5, 0), "America/New_York", dt.date(2026, 11, 2)),  # 00:00 EST
    # a move between zones
    (MOVE, at(2026, 5, 1, 11, 0), "Europe/London", dt.date(2026, 5, 1)),  # 12:00 BST
    (MOVE, at(2026, 5, 1, 12, 0), "Asia/Tokyo", dt.date(2026, 5, 1)),  # 21:00 JST
    (MOVE, at(2026, 5, 1, 16, 0), "Asia/Tokyo", dt.date(2026, 5, 2)),  # 01:00 JST
    # before the first recorded change the first zone applies
    (NY, at(2024, 6, 1, 2, 0), "America/New_York", dt.date(2024, 5, 31)),  # 22:00 EDT
    (MOVE, at(2025, 12, 31, 23, 30), "Europe/London", dt.date(2025, 12, 31)),
    # no history at all: UTC
    ([], at(2026, 3, 8, 23, 30), "UTC", dt.date(2026, 3, 8)),
    ([], at(2026, 3, 9, 0, 0), "UTC", dt.date(2026, 3, 9)),
]

HISTORIES = {"ny": NY, "move": MOVE, "none": []}


@pytest.mark.parametrize(("history", "instant", "tz", "local"), VECTORS)
def test_scalar_rule(history: list[tuple[dt.datetime, str]], instant: dt.datetime, tz: str, local: dt.date) -> None:
    h = TzHistory(history)
    assert h.tz_at(instant) == tz
    assert h.local_date(instant) == local


@pytest.mark.parametrize("name", sorted(HISTORIES))
def test_vectorised_rule_agrees_with_scalar(name: str) -> None:
    history = HISTORIES[name]
    h = TzHistory(history)
    instants = [v[1] for v in VECTORS if v[0] is history]
    days = h.local_day_index(np.array([i.timestamp() for i in instants]))
    vectorised = [day_index_to_date(d) for d in days]
    assert vectorised == [h.local_date(i) for i in instants]
    assert vectorised == [v[3] for v in VECTORS if v[0] is history]


def test_vectorised_rule_agrees_with_scalar_on_random_instants() -> None:
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(at(2025, 6, 1).timestamp(), at(2026, 12, 31).timestamp(), 2000))
    for history in HISTORIES.values():
        h = TzHistory(history)
        got = h.local_day_index(t)
        for i in range(0, t.size, 37):
            assert day_index_to_date(got[i]) == h.local_date(dt.datetime.fromtimestamp(t[i], UTC))


def test_sql_rule_agrees_with_python(db) -> None:
    """`processors.dayfacts` dates instants in SQL with AT TIME ZONE: same dates on the same vectors."""
    for history, instant, _, local in VECTORS:
        tz = TzHistory(history).tz_at(instant)
        (sql_date,) = db.execute("select (%s::timestamptz at time zone %s)::date", (instant, tz)).fetchone()
        assert sql_date == local == TzHistory(history).local_date(instant)
