"""Google Health API v4 and Oura API v2 parsing and mapping without the network: the wire forms
(int64 strings, Durations), Oura's signature, its 4 a.m. day on DST days and in another zone,
and a running day cut at now."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from device_adapters.cloud import google_health, oura
from device_adapters.context import DeviceContext

CTX = DeviceContext(patient_id="p1", episode_id="e1", device_id="d1")


def test_google_points_read_int64_strings_and_durations() -> None:
    page = google_health.DataPointsPage.model_validate({"dataPoints": [
        {"name": "x", "steps": {"count": "42", "interval": {
            "startTime": "2026-03-08T06:59:00Z", "startUtcOffset": "-18000s",
            "endTime": "2026-03-08T07:00:00Z", "endUtcOffset": "-14400s"}}},
        {"name": "y", "steps": {"count": 7, "interval": {
            "startTime": "2026-03-08T07:00:00Z", "startUtcOffset": -14400,
            "endTime": "2026-03-08T07:01:00Z", "endUtcOffset": -14400}}},
    ], "nextPageToken": "t"})
    got = google_health.step_intervals(page.dataPoints, CTX)
    assert [e.steps for e in got] == [42, 7]
    assert [e.zone_offset_s for e in got] == [-18000, -14400]  # the offset changes across the DST gap
    assert got[0].start == datetime(2026, 3, 8, 6, 59, tzinfo=UTC) and got[0].provenance.vendor == "google"
    with pytest.raises(ValueError):
        google_health.DataPointsPage.model_validate({"dataPoints": [{"steps": {"count": "-1", "interval": {
            "startTime": "2026-03-08T07:00:00Z", "endTime": "2026-03-08T07:01:00Z"}}}]})


def test_google_day_window_follows_the_zone_on_dst_days() -> None:
    start, end = google_health.day_window(date(2026, 3, 8), "America/New_York")  # spring forward
    assert (end - start) == timedelta(hours=23)
    start, end = google_health.day_window(date(2026, 11, 1), "America/New_York")  # fall back
    assert (end - start) == timedelta(hours=25)
    assert google_health.day_filter(start, end) == (
        'steps.interval.start_time >= "2026-11-01T04:00:00Z" AND steps.interval.start_time < "2026-11-02T05:00:00Z"'
    )


def test_google_subscriber_secret_is_compared_exactly() -> None:
    assert google_health.authorized(b"Bearer s3", "Bearer s3")
    assert not google_health.authorized(b"Bearer s3", "Bearer s4")
    assert not google_health.authorized(b"Bearer s3", None)


def test_oura_signature_covers_timestamp_and_body() -> None:
    secret, body = b"client-secret", b'{"user_id": "u"}'
    sig = oura.sign(secret, "1700000000", body)
    assert oura.verify_signature(secret, "1700000000", body, sig.upper())  # hex case is not public
    assert not oura.verify_signature(secret, "1700000001", body, sig)  # another time
    assert not oura.verify_signature(secret, "1700000000", body + b" ", sig)  # another body
    assert not oura.verify_signature(b"other", "1700000000", body, sig)
    assert not oura.verify_signature(secret, None, body, sig)
    assert oura.parse_timestamp("1700000000") == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert oura.parse_timestamp("2023-11-14T22:13:20Z") == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def _doc(day: date, steps: int, tz: str) -> oura.DailyActivity:
    start = datetime.combine(day, oura.DAY_START, ZoneInfo(tz))
    return oura.DailyActivity.model_validate(
        {"id": f"id-{day}", "day": day.isoformat(), "steps": steps, "timestamp": start.isoformat()})


def test_oura_day_lands_on_its_local_date_across_dst() -> None:
    ny = ZoneInfo("America/New_York")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    for day, hours in ((date(2026, 3, 7), 20), (date(2026, 3, 8), 20), (date(2026, 10, 31), 20)):
        (e,) = oura.day_intervals([_doc(day, 9000, "America/New_York")], "America/New_York", CTX, now)
        assert e.start.astimezone(ny).date() == day and e.start.astimezone(ny).hour == 4
        assert e.end == datetime.combine(day + timedelta(days=1), datetime.min.time(), ny).astimezone(UTC)
        assert (e.end - e.start) == timedelta(hours=hours)
        assert e.steps == 9000 and e.source_record_id == f"oura-daily-activity:{day.isoformat()}"


def test_oura_running_day_is_cut_at_now_and_keeps_its_identity() -> None:
    helsinki = ZoneInfo("Europe/Helsinki")
    day = date(2026, 6, 10)
    doc = _doc(day, 1200, "Europe/Helsinki")
    early = datetime.combine(day, datetime.min.time(), helsinki).replace(hour=3).astimezone(UTC)
    assert oura.day_intervals([doc], "Europe/Helsinki", CTX, early) == []  # Oura's day has not begun
    noon = datetime.combine(day, datetime.min.time(), helsinki).replace(hour=12, minute=30, second=5)
    (a,) = oura.day_intervals([doc], "Europe/Helsinki", CTX, noon)
    (b,) = oura.day_intervals([_doc(day, 3400, "Europe/Helsinki")], "Europe/Helsinki", CTX, noon + timedelta(hours=2))
    assert a.end == noon.replace(second=0).astimezone(UTC) and a.id == b.id and b.steps == 3400
