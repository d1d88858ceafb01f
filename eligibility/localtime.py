"""Patient-local calendar dates from a time-zone history (architecture rule 3).

The engine needs local dates for instants it meets itself: when a time entry was made and when a
device assignment began or ended. Data days arrive already dated by the processors. The rule is
the shared one of :mod:`rtm.localtime`, re-exported here.
"""

from __future__ import annotations

from rtm.localtime import FALLBACK_TZ, TzHistory, zone

__all__ = ["FALLBACK_TZ", "TzHistory", "zone"]
