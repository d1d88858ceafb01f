"""Data-day facts: per patient-local calendar date, whether and what qualifying data it holds.

Method: the patient's time-zone history is checked here and turned into one piecewise-constant
UTC-offset table by the shared rule in :mod:`rtm.localtime`; each timestamp's local date is then
``floor((t + offset(t)) / 86400)``, one ``searchsorted`` over all samples or intervals.
A day qualifies when it has at least ``min_wear_minutes`` worn minutes, an exercise set or a
device step record (RTM: "at least one qualifying data point", CMS CY2026 PFS).
Intervals crossing local midnight are split in proportion to their time on each date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numpy.typing import NDArray

from rtm.localtime import DAY_S as _DAY
from rtm.localtime import PROBE_STEP_S, OffsetTable, local_day_index, zone
from rtm.localtime import offset_table as shared_offset_table

from .errors import ShapeError, TimeZoneHistoryError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

TzHistory = Sequence[tuple[dt.datetime | float, str]]


@dataclass(frozen=True)
class DayParams:
    """Parameters of :func:`day_facts`."""

    min_wear_minutes: int = 1  # worn minutes that make a day count on their own
    extend_first_zone: bool = False  # data before the first history entry uses its zone
    probe_step_s: float = PROBE_STEP_S  # offset sampling step when searching transitions


DEFAULT_DAY = DayParams()


@dataclass(frozen=True)
class DayFact:
    """What one patient-local calendar date holds."""

    date: dt.date
    has_data: bool
    wear_minutes: int
    active_minutes: int
    exercise_sets: int
    exercise_reps: int
    steps: float  # NaN when no step source covers the date
    device_steps: float  # NaN when no device step record covers the date


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


def offset_table(history: TzHistory, start_s: float, stop_s: float,
                 params: DayParams = DEFAULT_DAY) -> OffsetTable:
    """UTC offsets over [start_s, stop_s] for a time-zone history of (effective-from, zone)."""
    if len(history) == 0:
        raise TimeZoneHistoryError("time-zone history is empty")
    froms = np.array([_epoch(f) for f, _ in history])
    zones = [z for _, z in history]
    if np.any(np.diff(froms) <= 0):
        raise TimeZoneHistoryError("time-zone history must be sorted by strictly increasing effective-from")
    for z in zones:
        _zone(z)
    if start_s < froms[0] and not params.extend_first_zone:
        raise TimeZoneHistoryError(
            f"data at {dt.datetime.fromtimestamp(start_s, dt.UTC).isoformat()} precede the first "
            f"time-zone entry ({dt.datetime.fromtimestamp(froms[0], dt.UTC).isoformat()})")
    return shared_offset_table(list(zip(froms.tolist(), zones, strict=True)), start_s, stop_s, params.probe_step_s)


def _split_intervals(start: FloatArray, end: FloatArray, value: FloatArray, table: OffsetTable
                     ) -> tuple[IntArray, FloatArray]:
    """Distribute interval values over local days in proportion to UTC time on each day."""
    d0 = local_day_index(start, table)
    d1 = local_day_index(np.nextafter(end, -np.inf), table)
    days: list[IntArray] = []
    vals: list[FloatArray] = []
    span = np.maximum(end - start, 1e-9)
    for k in range(int((d1 - d0).max()) + 1 if start.size else 0):
        d = d0 + k
        m = d <= d1
        if not np.any(m):
            continue
        # UTC instants of local midnights bounding day d (offset looked up near each midnight)
        lm0 = d[m] * _DAY
        lm1 = (d[m] + 1) * _DAY
        u0 = lm0 - table.offsets(lm0 - table.offsets(start[m]))
        u1 = lm1 - table.offsets(lm1 - table.offsets(end[m]))
        overlap = np.clip(np.minimum(end[m], u1) - np.maximum(start[m], u0), 0.0, None)
        days.append(d[m])
        vals.append(value[m] * overlap / span[m])
    if not days:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(days), np.concatenate(vals)


def day_facts(
    history: TzHistory,
    *,
    minute_start_s: FloatArray | None = None,
    minute_worn: NDArray[np.bool_] | None = None,
    minute_steps: FloatArray | None = None,
    minute_active: NDArray[np.bool_] | None = None,
    set_start_s: FloatArray | None = None,
    set_reps: NDArray[np.int64] | None = None,
    device_start_s: FloatArray | None = None,
    device_end_s: FloatArray | None = None,
    device_steps: FloatArray | None = None,
    params: DayParams = DEFAULT_DAY,
) -> list[DayFact]:
    """Facts for every local date touched by the inputs (UTC epoch seconds), sorted by date.

    ``minute_*`` come from :func:`motion.activity.minute_activity` (steps NaN where
    not worn), ``set_*`` from exercise analyses (one entry per set), ``device_*`` from
    :func:`motion.steps.device_steps`.
    """
    ms = np.asarray(minute_start_s if minute_start_s is not None else [], dtype=np.float64)
    mw = np.asarray(minute_worn if minute_worn is not None else np.zeros(ms.size, bool), dtype=bool)
    mst = np.asarray(minute_steps if minute_steps is not None else np.full(ms.size, np.nan), dtype=np.float64)
    ma = np.asarray(minute_active if minute_active is not None else np.zeros(ms.size, bool), dtype=bool)
    ss = np.asarray(set_start_s if set_start_s is not None else [], dtype=np.float64)
    sr = np.asarray(set_reps if set_reps is not None else np.zeros(ss.size, np.int64), dtype=np.int64)
    ds = np.asarray(device_start_s if device_start_s is not None else [], dtype=np.float64)
    de = np.asarray(device_end_s if device_end_s is not None else [], dtype=np.float64)
    dv = np.asarray(device_steps if device_steps is not None else [], dtype=np.float64)
    if not (mw.size == mst.size == ma.size == ms.size):
        raise ShapeError("minute_* arrays must have equal length")
    if sr.size != ss.size:
        raise ShapeError("set_reps must have one entry per set_start_s")
    if not (ds.size == de.size == dv.size):
        raise ShapeError("device_* arrays must have equal length")
    for name, arr in (("minute_start_s", ms), ("set_start_s", ss), ("device_start_s", ds), ("device_end_s", de)):
        if arr.size and not np.all(np.isfinite(arr)):
            raise ShapeError(f"{name} holds non-finite timestamps")
    stamps = np.concatenate((ms, ms + 60.0, ss, ds, de))
    if stamps.size == 0:
        return []
    table = offset_table(history, float(stamps.min()), float(stamps.max()), params)

    m_day = local_day_index(ms, table)
    s_day = local_day_index(ss, table)
    d_day, d_val = _split_intervals(ds, de, dv, table)
    days = np.unique(np.concatenate((m_day, s_day, d_day)))
    base = int(days[0]) if days.size else 0
    nd = int(days[-1]) - base + 1 if days.size else 0

    def per_day(idx: IntArray, w: FloatArray) -> FloatArray:
        if not idx.size:
            return np.zeros(nd)
        return np.asarray(np.bincount(idx - base, w, nd), dtype=np.float64)

    wear = per_day(m_day, mw.astype(np.float64))
    active = per_day(m_day, ma.astype(np.float64))
    worn_steps = per_day(m_day[mw], np.nan_to_num(mst[mw]))
    has_step_minutes = per_day(m_day[mw], np.ones(int(mw.sum()))) > 0
    sets = per_day(s_day, np.ones(ss.size))
    reps = per_day(s_day, sr.astype(np.float64))
    dev = per_day(d_day, d_val)
    has_dev = per_day(d_day, np.ones(d_day.size)) > 0

    facts: list[DayFact] = []
    epoch = dt.date(1970, 1, 1)
    for d in days:
        i = int(d) - base
        n_wear = round(wear[i])
        steps = float(worn_steps[i]) if has_step_minutes[i] else float("nan")
        device = float(dev[i]) if has_dev[i] else float("nan")
        has = n_wear >= params.min_wear_minutes or sets[i] > 0 or bool(has_dev[i])
        facts.append(DayFact(epoch + dt.timedelta(days=int(d)), bool(has), n_wear, round(active[i]),
                             round(sets[i]), round(reps[i]), steps, device))
    return facts
