"""Patient-local calendar dates from a time-zone history (architecture rule 3).

The engine needs local dates for instants it meets itself: when a time entry was made and when a
device assignment began or ended. Data days arrive already dated by the processors.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

# Last instant that still belongs to an interval whose end is exclusive.
_EPSILON = timedelta(microseconds=1)
FALLBACK_TZ = "UTC"  # only for a patient with no recorded zone at all


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


class TzHistory:
    """Which IANA zone was in force for a patient at any instant.

    Before the first recorded change the first known zone applies: a patient's first zone is
    recorded at enrolment, and nothing earlier can be billed anyway.
    """

    __slots__ = ("_starts", "_zones")

    def __init__(self, changes: Iterable[tuple[datetime, str]]) -> None:
        ordered = sorted(changes)
        self._starts = [at for at, _ in ordered]
        self._zones = [tz for _, tz in ordered] or [FALLBACK_TZ]

    def tz_at(self, instant: datetime) -> str:
        i = bisect_right(self._starts, instant) - 1
        return self._zones[max(i, 0)]

    def local_date(self, instant: datetime) -> date:
        return instant.astimezone(zone(self.tz_at(instant))).date()

    def last_local_date_before(self, instant: datetime) -> date:
        """Local date of the last instant before an exclusive end."""
        return self.local_date(instant - _EPSILON)
