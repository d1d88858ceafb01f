"""Per-minute steps and active minutes from step intervals at any granularity.

An interval's steps are spread over the minutes it covers in proportion to the overlap, with
cumulative rounding so that every interval's total is kept exactly. A minute covered by a
report exists as a row even with zero steps (zero is not missing); a minute no report covers has
no row (missing). Step counts alone cannot prove wear, so such a minute is marked worn only when
it has steps; wear from raw accelerometry is decided by the signal library's wear detection.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from processors.sink.raw import ChangedSpan
from rtm.db import Conn

I64 = NDArray[np.int64]
MINUTE = 60


def apportion_to_minutes(start_s: NDArray[np.float64], end_s: NDArray[np.float64],
                         steps: NDArray[np.int64]) -> tuple[I64, I64]:
    """Spread interval step counts over UTC minutes: (minute start in epoch seconds, steps)."""
    if start_s.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    first = np.floor(start_s / MINUTE).astype(np.int64)
    last = np.ceil(end_s / MINUTE).astype(np.int64) - 1
    counts = last - first + 1
    owner = np.repeat(np.arange(start_s.size), counts)
    offsets = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
    minute = first[owner] + offsets
    hi = np.minimum(end_s[owner], (minute + 1) * MINUTE)
    # Cumulative rounding inside each interval: the per-minute parts add up to the exact total.
    # The covered fraction up to each minute's end is computed in closed form per interval, so an
    # interval's split never depends on its neighbours (a running sum across intervals would let
    # float error flip .5 ties, and a replay batched differently would store other minutes).
    cum = (hi - start_s[owner]) / (end_s - start_s)[owner]
    rounded = np.rint(cum * steps[owner]).astype(np.int64)
    previous = np.concatenate(([0], rounded[:-1]))
    previous[np.cumsum(counts) - counts] = 0
    part = rounded - previous
    minutes, index = np.unique(minute, return_inverse=True)
    total = np.bincount(index, weights=part, minlength=minutes.size).astype(np.int64)
    return minutes * MINUTE, total


def merge_spans(spans: Iterable[ChangedSpan]) -> list[ChangedSpan]:
    """Union overlapping spans of the same device, widened to whole minutes."""
    by_device: dict[tuple[str, str], list[tuple[datetime, datetime]]] = {}
    for s in spans:
        lo = s.start.replace(second=0, microsecond=0)
        hi = s.end.replace(second=0, microsecond=0) + (timedelta(minutes=1) if s.end.second or s.end.microsecond
                                                       else timedelta(0))
        by_device.setdefault((s.patient_id, s.device_id), []).append((lo, hi))
    merged: list[ChangedSpan] = []
    for (patient, device), ranges in by_device.items():
        ranges.sort()
        cur_lo, cur_hi = ranges[0]
        for lo, hi in ranges[1:]:
            if lo <= cur_hi:
                cur_hi = max(cur_hi, hi)
            else:
                merged.append(ChangedSpan(patient, device, cur_lo, cur_hi))
                cur_lo, cur_hi = lo, hi
        merged.append(ChangedSpan(patient, device, cur_lo, cur_hi))
    return merged


def recompute_minutes(conn: Conn, spans: Sequence[ChangedSpan], active_cadence_spm: int) -> list[ChangedSpan]:
    """Replace the interval-derived minutes of each changed span; return the spans recomputed."""
    merged = merge_spans(spans)
    for span in merged:
        rows = conn.execute(
            """select extract(epoch from time), extract(epoch from end_time), steps from activity_intervals
               where device_id = %s and patient_id = %s and not deleted and time < %s and end_time > %s""",
            (span.device_id, span.patient_id, span.end, span.start),
        ).fetchall()
        arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
        minutes, steps = apportion_to_minutes(arr[:, 0], arr[:, 1], arr[:, 2].astype(np.int64))
        keep = (minutes >= span.start.timestamp()) & (minutes < span.end.timestamp())
        minutes, steps = minutes[keep], steps[keep]
        conn.execute(
            "delete from activity_minutes where patient_id = %s and device_id = %s and method = 'interval' "
            "and time >= %s and time < %s",
            (span.patient_id, span.device_id, span.start, span.end),
        )
        if minutes.size:
            times = [datetime.fromtimestamp(int(m), UTC) for m in minutes]
            conn.execute(
                """insert into activity_minutes (time, patient_id, device_id, steps, active, worn, method)
                   select t, %s, %s, s, s >= %s, case when s > 0 then true end, 'interval'
                   from unnest(%s::timestamptz[], %s::int[]) as u(t, s)""",
                (span.patient_id, span.device_id, active_cadence_spm, times, steps.tolist()),
            )
    return merged
