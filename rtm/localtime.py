"""Patient-local time from a time-zone history (docs/architecture.md, rule 3).

One rule for every part: the IANA zone in force for a patient at an instant is the one of the
latest recorded change at or before it; before the first recorded change the first zone applies
(a patient's first zone is recorded at enrolment, and nothing earlier can be billed anyway); a
patient with no recorded zone at all is in UTC. Local dates follow ``zoneinfo``, so DST is applied.

Two forms of the same rule:

- scalar, on aware datetimes: :meth:`TzHistory.tz_at`, :meth:`TzHistory.local_date`;
- vectorised, on arrays of UTC epoch seconds: the history becomes one piecewise-constant
  UTC-offset table (history changes plus every DST/offset transition of each zone, found by
  coarse sampling and bisection to the second), and each instant's local day is
  ``floor((t + offset(t)) / 86400)`` (:func:`offset_table`, :func:`local_day_index`).
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

FALLBACK_TZ = "UTC"  # only for a patient with no recorded zone at all
DAY_S = 86400.0
PROBE_STEP_S = 6 * 3600.0  # no real zone changes its offset twice within 6 h
EPOCH_DATE = dt.date(1970, 1, 1)
# Last instant that still belongs to an interval whose end is exclusive.
_EPSILON = dt.timedelta(microseconds=1)


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The zone of an IANA name (raises ``ZoneInfoNotFoundError``/``ValueError`` if unknown)."""
    return ZoneInfo(name)


def utc_offset_at(tz: ZoneInfo, t: float) -> float:
    """UTC offset in seconds of ``tz`` at UTC epoch second ``t``."""
    off = dt.datetime.fromtimestamp(t, tz=tz).utcoffset()
    return off.total_seconds() if off is not None else 0.0


# ------------------------------------------------------------------------------ vectorised ------


@dataclass(frozen=True)
class OffsetTable:
    """Piecewise-constant UTC offset: ``offset_s[i]`` applies from ``start_s[i]`` on."""

    start_s: FloatArray
    offset_s: FloatArray

    def offsets(self, t: FloatArray) -> FloatArray:
        i = np.searchsorted(self.start_s, t, side="right") - 1
        return np.asarray(self.offset_s[np.clip(i, 0, None)])


def zone_transitions(zone_name: str, start_s: float, stop_s: float, step_s: float = PROBE_STEP_S
                     ) -> tuple[FloatArray, FloatArray]:
    """UTC offsets of ``zone_name`` over [start_s, stop_s): transition instants and new offsets.

    The first entry is ``start_s`` with the offset in force then. Offsets are probed every
    ``step_s`` and each change located by bisection to one second.
    """
    tz = zone(zone_name)
    probes = np.arange(start_s, stop_s, step_s)
    probes = np.append(probes, stop_s)
    offs = np.array([utc_offset_at(tz, float(p)) for p in probes])
    starts = [float(start_s)]
    values = [float(offs[0])]
    for i in np.flatnonzero(np.diff(offs) != 0):
        lo, hi = float(probes[i]), float(probes[i + 1])
        o_lo = offs[i]
        while hi - lo > 1.0:
            mid = np.floor((lo + hi) / 2.0)
            if utc_offset_at(tz, mid) == o_lo:
                lo = mid
            else:
                hi = mid
        starts.append(hi)
        values.append(utc_offset_at(tz, hi))
    return np.asarray(starts), np.asarray(values)


def offset_table(changes: Sequence[tuple[float, str]], start_s: float, stop_s: float,
                 probe_step_s: float = PROBE_STEP_S) -> OffsetTable:
    """UTC offsets over [start_s, stop_s] for (effective-from epoch second, zone) changes.

    ``changes`` must be sorted by effective-from. The first zone also covers everything before
    its effective-from; no changes at all means UTC.
    """
    if len(changes) == 0:
        changes = [(start_s, FALLBACK_TZ)]
    froms = np.array([float(f) for f, _ in changes])
    zones = [z for _, z in changes]
    seg_from = froms.copy()
    seg_from[0] = min(seg_from[0], start_s)
    seg_to = np.append(froms[1:], max(stop_s, froms[-1]) + 1.0)
    all_s: list[FloatArray] = []
    all_o: list[FloatArray] = []
    for a, b, z in zip(seg_from, seg_to, zones, strict=True):
        lo, hi = max(a, start_s - DAY_S), min(b, stop_s + DAY_S)
        if hi <= lo:
            s, o = np.array([a]), np.array([utc_offset_at(zone(z), float(a))])
        else:
            s, o = zone_transitions(z, lo, hi, probe_step_s)
            s[0] = a
        all_s.append(s)
        all_o.append(o)
    return OffsetTable(np.concatenate(all_s), np.concatenate(all_o))


def local_day_index(t: FloatArray, table: OffsetTable) -> IntArray:
    """Local calendar day of each UTC epoch second, as days since 1970-01-01 (local)."""
    return np.floor((t + table.offsets(t)) / DAY_S).astype(np.int64)


def day_index_to_date(day: int) -> dt.date:
    return EPOCH_DATE + dt.timedelta(days=int(day))


# ------------------------------------------------------------------------------ scalar ----------


class TzHistory:
    """Which IANA zone was in force for a patient at any instant (the rule in the module doc)."""

    __slots__ = ("_starts", "_zones")

    def __init__(self, changes: Iterable[tuple[dt.datetime, str]]) -> None:
        ordered = sorted(changes)
        self._starts = [at for at, _ in ordered]
        self._zones = [tz for _, tz in ordered] or [FALLBACK_TZ]

    def tz_at(self, instant: dt.datetime) -> str:
        i = bisect_right(self._starts, instant) - 1
        return self._zones[max(i, 0)]

    def local_date(self, instant: dt.datetime) -> dt.date:
        return instant.astimezone(zone(self.tz_at(instant))).date()

    def last_local_date_before(self, instant: dt.datetime) -> dt.date:
        """Local date of the last instant before an exclusive end."""
        return self.local_date(instant - _EPSILON)

    def offset_table(self, start_s: float, stop_s: float, probe_step_s: float = PROBE_STEP_S) -> OffsetTable:
        """The vectorised form of this history over [start_s, stop_s] (UTC epoch seconds)."""
        # no recorded zone: _starts is empty (and _zones holds only the fallback), so UTC applies
        changes = [(at.timestamp(), tz) for at, tz in zip(self._starts, self._zones, strict=False)]
        return offset_table(changes, start_s, stop_s, probe_step_s)

    def local_day_index(self, t: FloatArray) -> IntArray:
        """Local day (days since 1970-01-01) of each UTC epoch second in ``t``."""
        t = np.asarray(t, dtype=np.float64)
        if t.size == 0:
            return np.zeros(0, dtype=np.int64)
        return local_day_index(t, self.offset_table(float(t.min()), float(t.max())))
