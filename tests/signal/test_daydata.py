"""Patient-local calendar days across DST and time-zone moves."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from motion import TimeZoneHistoryError, local_day_index, offset_table

UTC = dt.UTC


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


NY = [(dt.datetime(2025, 1, 1, tzinfo=UTC), "America/New_York")]


def dates(days: np.ndarray) -> list[str]:
    return [str(dt.date(1970, 1, 1) + dt.timedelta(days=int(d))) for d in days]


def test_offsets_follow_dst_transitions() -> None:
    tab = offset_table(NY, ts(2026, 1, 1), ts(2026, 12, 31))
    assert list(tab.offset_s[-3:] / 3600) == [-5.0, -4.0, -5.0]
    assert tab.start_s[-2] == ts(2026, 3, 8, 7)  # 02:00 EST -> 03:00 EDT
    assert tab.start_s[-1] == ts(2026, 11, 1, 6)  # 02:00 EDT -> 01:00 EST


def test_local_dates_around_spring_forward_and_fall_back() -> None:
    tab = offset_table(NY, ts(2026, 3, 1), ts(2026, 11, 30))
    t = np.array([ts(2026, 3, 8, 4, 59), ts(2026, 3, 8, 5, 0),  # 23:59 / 00:00 EST
                  ts(2026, 3, 9, 3, 59), ts(2026, 3, 9, 4, 0),  # 23:59 / 00:00 EDT
                  ts(2026, 11, 2, 4, 59), ts(2026, 11, 2, 5, 0)])  # 23:59 EST after fall-back
    assert dates(local_day_index(t, tab)) == ["2026-03-07", "2026-03-08", "2026-03-08", "2026-03-09",
                                              "2026-11-01", "2026-11-02"]


def test_vectorised_dates_match_zoneinfo_per_sample() -> None:
    from zoneinfo import ZoneInfo

    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(ts(2025, 1, 1), ts(2027, 1, 1), 20000))
    hist = [(dt.datetime(2025, 1, 1, tzinfo=UTC), "Europe/Berlin"),
            (dt.datetime(2025, 7, 1, 12, tzinfo=UTC), "Australia/Sydney"),
            (dt.datetime(2026, 2, 1, tzinfo=UTC), "America/Los_Angeles")]
    tab = offset_table(hist, float(t[0]), float(t[-1]))
    got = dates(local_day_index(t, tab))
    froms = [h[0].timestamp() for h in hist]
    zones = [ZoneInfo(h[1]) for h in hist]
    for i in range(0, t.size, 97):  # per-sample reference on a subset
        z = zones[int(np.searchsorted(froms, t[i], side="right")) - 1]
        assert got[i] == str(dt.datetime.fromtimestamp(t[i], z).date())


def test_moving_time_zone_changes_the_date() -> None:
    hist = [(dt.datetime(2026, 1, 1, tzinfo=UTC), "Europe/London"),
            (dt.datetime(2026, 5, 1, 12, tzinfo=UTC), "Asia/Tokyo")]
    t = np.array([ts(2026, 5, 1, 11, 0), ts(2026, 5, 1, 16, 0)])  # 12:00 BST / 01:00 JST next day
    assert dates(local_day_index(t, offset_table(hist, float(t[0]), float(t[-1])))) == ["2026-05-01", "2026-05-02"]


def test_history_errors() -> None:
    with pytest.raises(TimeZoneHistoryError, match="empty"):
        offset_table([], 0.0, 1.0)
    with pytest.raises(TimeZoneHistoryError, match="unknown IANA"):
        offset_table([(0.0, "Mars/Olympus_Mons")], 0.0, 1.0)
    with pytest.raises(TimeZoneHistoryError, match="sorted"):
        offset_table([(10.0, "UTC"), (5.0, "UTC")], 20.0, 30.0)
    with pytest.raises(TimeZoneHistoryError, match="timezone-aware"):
        offset_table([(dt.datetime(2026, 1, 1), "UTC")], 0.0, 1.0)
    with pytest.raises(TimeZoneHistoryError, match="precede"):
        offset_table(NY, ts(2024, 6, 1), ts(2024, 6, 2))
    t = np.array([ts(2024, 6, 1, 12)])
    assert dates(local_day_index(t, offset_table(NY, float(t[0]), float(t[0]), extend_first_zone=True))) == [
        "2024-06-01"]
