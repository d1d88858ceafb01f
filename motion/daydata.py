"""Patient-local dates for sample arrays: a checked time-zone history as an offset table.

Method: the patient's time-zone history is checked here and turned into one piecewise-constant
UTC-offset table by the shared rule in :mod:`rtm.localtime`; each timestamp's local date is then
``floor((t + offset(t)) / 86400)``, one ``searchsorted`` over all samples or intervals.
Which dates are data days is decided in one place only, the day-facts rebuild of the stream
processors (`processors/dayfacts.py`), by the payer policy's `[data_day]` rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from rtm.localtime import PROBE_STEP_S, OffsetTable, zone
from rtm.localtime import offset_table as shared_offset_table

from .errors import TimeZoneHistoryError

TzHistory = Sequence[tuple[dt.datetime | float, str]]


def _epoch(x: dt.datetime | float) -> float:
    if isinstance(x, dt.datetime):
        if x.tzinfo is None:
            raise TimeZoneHistoryError(f"effective-from instant {x!r} must be timezone-aware (UTC)")
        return x.timestamp()
    v = float(x)
    if not np.isfinite(v):
        raise TimeZoneHistoryError(f"effective-from instant {x!r} is not finite")
    return v


def _zone(name: str) -> ZoneInfo:
    try:
        return zone(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TimeZoneHistoryError(f"unknown IANA time zone {name!r}") from exc


def offset_table(history: TzHistory, start_s: float, stop_s: float, *, extend_first_zone: bool = False,
                 probe_step_s: float = PROBE_STEP_S) -> OffsetTable:
    """UTC offsets over [start_s, stop_s] for a time-zone history of (effective-from, zone)."""
    if len(history) == 0:
        raise TimeZoneHistoryError("time-zone history is empty")
    froms = np.array([_epoch(f) for f, _ in history])
    zones = [z for _, z in history]
    if np.any(np.diff(froms) <= 0):
        raise TimeZoneHistoryError("time-zone history must be sorted by strictly increasing effective-from")
    for z in zones:
        _zone(z)
    if start_s < froms[0] and not extend_first_zone:
        raise TimeZoneHistoryError(
            f"data at {dt.datetime.fromtimestamp(start_s, dt.UTC).isoformat()} precede the first "
            f"time-zone entry ({dt.datetime.fromtimestamp(froms[0], dt.UTC).isoformat()})")
    return shared_offset_table(list(zip(froms.tolist(), zones, strict=True)), start_s, stop_s, probe_step_s)
