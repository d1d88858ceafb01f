"""The fault harness itself: a reduced `rtm faults` (two faults, one patient each, one day) on its own
private stack; the judge's stored-exactly-once check on a real database; its pure parts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zlib
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from rtm.contract import ImuBatch
from rtm.settings import PROJECT_ROOT, Settings, get_settings
from tools.faults import report
from tools.faults.checks import settle, stored_events
from tools.faults.injectors import BOMB_MIB, FAULTS, bomb_body
from tools.faults.load import Item, conflicting
from tools.faults.main import parse_duration

REDUCED = ("worker-sigkill", "duplicate-storm")


@pytest.mark.integration
def test_reduced_fault_run() -> None:
    # The relay republishes an unstored event only after 600 s, far beyond this run's wait: an event
    # the worker pipeline lost shows as missing here instead of being repaired quietly by the relay.
    # The 10 s quiet window starts once the killed worker's replacement is ready (its start-up on a
    # busy machine is a delay, measured below, not a loss).
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "faults", "--only", ",".join(REDUCED), "--patients-per-fault", "1",
         "--days", "1", "--quiet", "10", "--republish-after", "600"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=400, check=False,
    )
    out = proc.stdout
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    table = out[out.index("fault ") :]
    for name in REDUCED:
        assert any(line.startswith(name) for line in table.splitlines()), out
    assert summary["faults"] == len(REDUCED)
    assert summary["min_faults"] == len(REDUCED)
    assert summary["acknowledged"] > 0
    # Neither of these may lose or double an acknowledged event on any branch.
    assert summary["missing"] == 0, out
    assert summary["duplicated"] == 0, out
    assert summary["derived_equal"], out
    assert proc.returncode == 0, out
    # Bounded recovery: once the replacement is ready it holds every partition at its committed
    # offset, so what is left is a fetch, one batch window and a transaction per topic. One session
    # timeout of slack covers those on a loaded machine (measured: under 1.1 s; docs/faults.md).
    settings = get_settings()
    [takeover] = summary["takeovers"]["worker-sigkill"]
    assert takeover["ready_s"] is not None, out
    assert takeover["caught_up_s"] is not None, out
    assert takeover["caught_up_s"] <= settings.sink_flush_interval_s + settings.kafka_session_timeout_ms / 1000, out


def test_summary_and_targets() -> None:
    rows = [report.Row("a", 10, 10, 0, 0, True, 1.0), report.Row("b", 5, 4, 1, 0, False, 1.0)]
    s = report.summary(rows, min_faults=2)
    assert (s["faults"], s["acknowledged"], s["missing"], s["duplicated"], s["derived_equal"]) == (2, 15, 1, 0, False)
    assert not report.targets_met(s)
    ok = report.summary(rows[:1], min_faults=1)
    assert report.targets_met(ok)
    assert not report.targets_met(report.summary(rows[:1], min_faults=9))  # too few faults is a miss
    assert "NO" in report.table(rows).splitlines()[-1]


def test_the_issue_faults_are_all_there() -> None:
    names = {f.name for f in FAULTS}
    assert len(names) >= report.MIN_FAULTS
    assert {"broker-restart", "database-restart", "worker-sigkill", "gateway-restart", "duplicate-storm",
            "out-of-order", "poison-event", "gzip-bomb"} <= names


def test_bomb_inflates_to_what_it_says() -> None:
    body = bomb_body()
    assert len(body) < 256 << 10
    inflated = zlib.decompress(body, 16 + zlib.MAX_WBITS)
    assert BOMB_MIB << 20 <= len(inflated) < (BOMB_MIB + 1) << 20
    assert inflated.startswith(b'{"events":[') and inflated.endswith(b"]}")


def test_durations() -> None:
    assert parse_duration("30m") == 1800
    assert parse_duration("90s") == parse_duration("90") == 90
    assert parse_duration("1h") == 3600
    with pytest.raises(Exception, match="not a duration"):
        parse_duration("soon")


def _stored_batch(db: psycopg.Connection, item: Item, frame: bytes) -> None:
    db.execute(
        """insert into imu_batches (time, event_id, patient_id, device_id, stream_id, body_site, sample_rate_hz,
                                    n_samples, duration_s, schema_version, frame, provenance)
           values (now(), %s, %s, 'dev-judge', 's', 'thigh_left', 50, 10, 0.2, 1, %s, '{}')""",
        (item.event_id, item.patient_id, frame),
    )


@pytest.mark.integration
def test_the_judge_finds_what_is_missing_or_other(db: psycopg.Connection) -> None:
    rng = np.random.default_rng(3)
    t0 = datetime(2026, 3, 1, 12, tzinfo=UTC)

    def batch(k: int) -> Item:
        return Item.of(ImuBatch.model_validate({
            "patient_id": "pat-judge", "stream_id": "s", "body_site": "thigh_left", "sample_rate_hz": 50.0,
            "t0": t0 + timedelta(seconds=k), "acc": rng.normal(0, 1, (10, 3)).astype(np.float32),
            "gyr": rng.normal(0, 1, (10, 3)).astype(np.float32),
            "provenance": {"adapter": "t", "vendor": "t", "device_id": "dev-judge"},
        }))

    kept, lost, changed = batch(0), batch(1), batch(2)
    other = conflicting(changed)
    _stored_batch(db, kept, kept.body)
    _stored_batch(db, changed, changed.body)  # the first version stays; the second was acknowledged
    found = stored_events(db, {kept.event_id: kept, lost.event_id: lost, other.event_id: other})
    assert (found.acknowledged, found.stored, found.duplicated, found.other_content) == (3, 1, 0, 1)
    assert set(found.missing) == {lost.event_id, other.event_id}


@pytest.mark.integration
def test_settle_waits_for_a_starting_worker_before_giving_up(db_settings: Settings) -> None:
    """An event still absent while a replacement worker starts is not judged missing until the
    worker is ready and then nothing changed for the quiet window."""
    rng = np.random.default_rng(5)
    item = Item.of(ImuBatch.model_validate({
        "patient_id": "pat-settle", "stream_id": "s", "body_site": "thigh_left", "sample_rate_hz": 50.0,
        "t0": datetime(2026, 3, 2, 12, tzinfo=UTC), "acc": rng.normal(0, 1, (10, 3)).astype(np.float32),
        "gyr": rng.normal(0, 1, (10, 3)).astype(np.float32),
        "provenance": {"adapter": "t", "vendor": "t", "device_id": "dev-settle"},
    }))
    start = time.monotonic()
    ready_after_s, quiet_s = 2.0, 0.5

    def starting() -> bool:
        return time.monotonic() - start < ready_after_s

    settled = settle(lambda: psycopg.connect(db_settings.dsn("owner"), autocommit=True), {item.event_id: item},
                     ["pat-settle"], lambda: [], starting, quiet_s, 30.0)
    waited = time.monotonic() - start
    assert settled.stored.missing == [item.event_id]
    assert settled.all_stored_at is None
    assert ready_after_s + quiet_s <= waited < ready_after_s + quiet_s + 5.0
