"""Patient-local calendar days across DST and time-zone moves."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from motion import TimeZoneHistoryError, day_facts, local_day_index, offset_table
from motion.daydata import DayParams

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


def test_day_facts_wear_sets_steps_and_zero_vs_missing() -> None:
    # minutes on 2026-03-08 local (NY), some worn with zero steps, one unworn
    m = np.array([ts(2026, 3, 8, 14, 0), ts(2026, 3, 8, 14, 1), ts(2026, 3, 8, 14, 2), ts(2026, 3, 9, 14, 0)])
    facts = day_facts(NY, minute_start_s=m, minute_worn=np.array([True, True, False, False]),
                      minute_steps=np.array([0.0, 12.0, np.nan, np.nan]),
                      minute_active=np.array([False, True, False, False]),
                      set_start_s=np.array([ts(2026, 3, 8, 3, 30)]), set_reps=np.array([10]))
    by = {f.date.isoformat(): f for f in facts}
    assert set(by) == {"2026-03-07", "2026-03-08", "2026-03-09"}
    assert by["2026-03-07"].exercise_sets == 1 and by["2026-03-07"].exercise_reps == 10  # 22:30 local
    assert by["2026-03-07"].has_data and np.isnan(by["2026-03-07"].steps)
    d8 = by["2026-03-08"]
    assert d8.has_data and d8.wear_minutes == 2 and d8.steps == 12.0 and d8.active_minutes == 1
    d9 = by["2026-03-09"]
    assert not d9.has_data and d9.wear_minutes == 0 and np.isnan(d9.steps)  # unworn: missing


def test_device_step_interval_across_local_midnight_is_split() -> None:
    facts = day_facts(NY, device_start_s=np.array([ts(2026, 7, 1, 2)]), device_end_s=np.array([ts(2026, 7, 1, 6)]),
                      device_steps=np.array([400.0]))
    # 22:00-02:00 EDT: half on June 30, half on July 1
    assert [(f.date.isoformat(), f.device_steps) for f in facts] == [("2026-06-30", 200.0), ("2026-07-01", 200.0)]
    assert all(f.has_data for f in facts)


def test_moving_time_zone_changes_the_date() -> None:
    hist = [(dt.datetime(2026, 1, 1, tzinfo=UTC), "Europe/London"),
            (dt.datetime(2026, 5, 1, 12, tzinfo=UTC), "Asia/Tokyo")]
    t = np.array([ts(2026, 5, 1, 11, 0), ts(2026, 5, 1, 16, 0)])  # 12:00 BST / 01:00 JST next day
    facts = day_facts(hist, set_start_s=t, set_reps=np.array([5, 6]))
    assert [f.date.isoformat() for f in facts] == ["2026-05-01", "2026-05-02"]


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
        day_facts(NY, set_start_s=np.array([ts(2024, 6, 1)]))
    facts = day_facts(NY, set_start_s=np.array([ts(2024, 6, 1, 12)]), params=DayParams(extend_first_zone=True))
    assert facts[0].date == dt.date(2024, 6, 1)


def test_no_inputs_no_days() -> None:
    assert day_facts(NY) == []
