"""The stream processors end to end on the real broker and database: IMU recordings assembled
from batches that arrive late, twice and out of order; a rep split across two batches; step
intervals to minutes and data days; replays; worker restarts; two workers against one."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql

from motion.analysis import analyze_exercise
from motion.recording import ImuRecording
from processors.assembly import assemble
from processors.supervisor import WorkerProcess, start_worker, wait_ready
from rtm.contract import ActivityInterval, Event, ImuBatch, Provenance, SessionMarker, TimezoneChange
from rtm.db.migrate import migrate
from rtm.settings import Settings
from rtm.stack import postgres
from rtm.stack.broker import free_port
from simulation.cohort import Cohort, SimPatient, exercise_session
from tests.pipeline.helpers import produce, read_dead_letters, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fast(db_settings: Settings) -> Settings:
    """Short quiet period so that tests see analyses quickly."""
    return db_settings.model_copy(update={"analysis_quiet_s": 0.5, "analysis_poll_s": 0.25,
                                          "app_id": f"{db_settings.app_id}-proc"})


@pytest.fixture(scope="module")
def worker(fast: Settings) -> Iterator[WorkerProcess]:
    w = start_worker(fast, port=free_port())
    yield w
    w.stop()


def _patient(tag: str, exercise: str = "knee_extension") -> SimPatient:
    pid = f"pat-{tag}-{uuid.uuid4().hex[:6]}"
    return SimPatient(index=0, patient_id=pid, episode_id=f"ep-{pid}", device_id=f"imu-{pid}",
                      tz="America/New_York", exercise=exercise, body_site="shank_right", adherence=1.0,
                      wear=1.0, rom_start_deg=60.0, trend="stalled")


def _session(p: SimPatient, seed: int, start: datetime) -> tuple[list[SessionMarker], list[ImuBatch], int]:
    cohort = Cohort([p], start.date(), 1, seed)
    events, true_reps = exercise_session(cohort, p, 0, start, np.random.default_rng(seed))
    markers = [e for e in events if isinstance(e, SessionMarker)]
    batches = [e for e in events if isinstance(e, ImuBatch)]
    return markers, batches, true_reps


def _analysis(db: psycopg.Connection[Any], device: str) -> tuple[Any, ...] | None:
    return db.execute("select status, sets, reps, samples, batches from stream_analyses where device_id = %s",
                      (device,)).fetchone()


def _idle(db: psycopg.Connection[Any], device: str) -> bool:
    row = db.execute("select count(*) from imu_stream_queue where device_id = %s", (device,)).fetchone()
    return row is not None and row[0] == 0


def _direct_reps(batches: list[ImuBatch], exercise: str) -> int:
    _, t, acc, gyr = assemble(batches)
    return analyze_exercise(ImuRecording(t, acc, gyr), exercise).n_reps


def test_recording_from_late_duplicate_out_of_order_batches_is_analysed_once(
    worker: WorkerProcess, fast: Settings, db: psycopg.Connection[Any]
) -> None:
    p = _patient("ooo")
    markers, batches, true_reps = _session(p, 11, datetime(2026, 3, 2, 15, tzinfo=UTC))
    expected = _direct_reps(batches, p.exercise)
    assert abs(expected - true_reps) <= 1
    rng = np.random.default_rng(3)
    early = [batches[i] for i in rng.permutation(len(batches) - 2)]
    late = batches[-2:]
    # Out of order, each early batch twice, markers end-first; the last two batches come late.
    produce(fast, [markers[1], *early, *early[::2], markers[0]])
    first = wait_for(lambda: _analysis(db, p.device_id), lambda r: r is not None and _idle(db, p.device_id))
    assert first[0] == "analysed" and first[4] == len(batches) - 2
    produce(fast, [*late, late[0]])
    final = wait_for(lambda: _analysis(db, p.device_id),
                     lambda r: r is not None and r[4] == len(batches) and _idle(db, p.device_id))
    assert final[0] == "analysed"
    assert final[2] == expected  # the same as analysing the whole recording at once
    stored = db.execute("select sum(rep_count) from exercise_sets where device_id = %s", (p.device_id,)).fetchone()
    assert stored is not None and stored[0] == expected
    reps = db.execute(
        "select count(*) from rep_results r join exercise_sets s using (set_id) where s.device_id = %s",
        (p.device_id,)).fetchone()
    assert reps is not None and reps[0] == expected  # the first analysis's rows were replaced, not added to


def test_a_rep_split_across_two_batches_is_counted_once(
    worker: WorkerProcess, fast: Settings, db: psycopg.Connection[Any]
) -> None:
    p = _patient("split")
    markers, batches, _ = _session(p, 12, datetime(2026, 3, 3, 16, tzinfo=UTC))
    whole = _direct_reps(batches, p.exercise)
    # Re-cut the recording so that a boundary falls in the middle of the first detected rep.
    origin, t, acc, gyr = assemble(batches)
    rep = analyze_exercise(ImuRecording(t, acc, gyr), p.exercise).reps[0]
    cut = int(np.searchsorted(t, (rep.start_s + rep.end_s) / 2))
    prov = batches[0].provenance
    halves = [
        ImuBatch(patient_id=p.patient_id, episode_id=p.episode_id, provenance=prov, stream_id=batches[0].stream_id,
                 body_site=p.body_site, t0=origin + timedelta(seconds=float(t[a])), sample_rate_hz=50.0,
                 acc=acc[a:b], gyr=gyr[a:b], t_offsets_us=np.rint((t[a:b] - t[a]) * 1e6).astype(np.int32))
        for a, b in ((0, cut), (cut, t.size))
    ]
    produce(fast, [*markers, *halves])
    result = wait_for(lambda: _analysis(db, p.device_id),
                      lambda r: r is not None and r[4] == 2 and _idle(db, p.device_id))
    assert result[2] == whole


def _activity(patient: str, device: str, start: datetime, minutes: int, steps: int,
              record: str | None = None, deleted: bool = False) -> ActivityInterval:
    return ActivityInterval(
        patient_id=patient, provenance=Provenance(adapter="test", vendor="acme", device_id=device),
        source="health_connect", source_record_id=record, start=start, end=start + timedelta(minutes=minutes),
        steps=steps, deleted=deleted)


def _facts(db: psycopg.Connection[Any], patient: str) -> list[tuple[Any, ...]]:
    return db.execute("select local_date, tz, steps, wear_minutes, qualifying from data_day_facts "
                      "where patient_id = %s order by local_date", (patient,)).fetchall()


def test_steps_become_minutes_and_patient_local_data_days_across_dst_and_a_move(
    worker: WorkerProcess, fast: Settings, db: psycopg.Connection[Any]
) -> None:
    patient = f"pat-days-{uuid.uuid4().hex[:6]}"
    device = f"watch-{patient}"
    prov = Provenance(adapter="test", vendor="acme", device_id=device)
    db.execute("insert into clinics (clinic_id, name) values ('clinic-t', 'Test') on conflict do nothing")
    db.execute("insert into patients (patient_id, clinic_id) values (%s, 'clinic-t')", (patient,))
    # New York; DST ends 2026-11-01 at 06:00 UTC (02:00 EDT -> 01:00 EST).
    produce(fast, [TimezoneChange(patient_id=patient, provenance=prov, effective_from=datetime(2026, 10, 1, tzinfo=UTC),
                                  tz="America/New_York")])
    events: list[Event] = [
        _activity(patient, device, datetime(2026, 11, 1, 3, 30, tzinfo=UTC), 20, 600, "a"),  # 23:30 EDT Oct 31
        _activity(patient, device, datetime(2026, 11, 1, 4, 30, tzinfo=UTC), 10, 0, "b"),  # 00:30 EDT Nov 1: zero
        _activity(patient, device, datetime(2026, 11, 2, 4, 30, tzinfo=UTC), 10, 50, "c"),  # 23:30 EST Nov 1
        _activity(patient, device, datetime(2026, 11, 2, 5, 30, tzinfo=UTC), 10, 70, "d"),  # 00:30 EST Nov 2
    ]
    produce(fast, events)
    want = [
        (date(2026, 10, 31), "America/New_York", 600, 20, True),
        (date(2026, 11, 1), "America/New_York", 50, 10, True),  # the zero interval adds a zero, not a wear
        (date(2026, 11, 2), "America/New_York", 70, 10, True),
    ]
    wait_for(lambda: _facts(db, patient), lambda f: f == want)
    minutes = db.execute("select count(*), sum(steps) from activity_minutes where patient_id = %s",
                         (patient,)).fetchone()
    assert minutes == (50, 720)  # every covered minute is a row, zero steps included

    # The patient moves to Los Angeles on Nov 2: 00:30 EST Nov 2 is 21:30 PST Nov 1.
    produce(fast, [TimezoneChange(patient_id=patient, provenance=prov,
                                  effective_from=datetime(2026, 11, 2, 5, tzinfo=UTC), tz="America/Los_Angeles")])
    moved = [
        (date(2026, 10, 31), "America/New_York", 600, 20, True),
        (date(2026, 11, 1), "America/New_York", 120, 20, True),  # one day, begun in New York
    ]
    wait_for(lambda: _facts(db, patient), lambda f: f == moved, timeout=30)

    # A withdrawn record (HealthKit deletion) takes its day away again.
    produce(fast, [_activity(patient, device, datetime(2026, 11, 1, 3, 30, tzinfo=UTC), 20, 600, "a", deleted=True)])
    wait_for(lambda: _facts(db, patient), lambda f: f == moved[1:])


def test_an_event_the_database_refuses_is_dead_lettered_and_the_rest_is_stored(
    worker: WorkerProcess, fast: Settings, db: psycopg.Connection[Any]
) -> None:
    known = f"pat-known-{uuid.uuid4().hex[:6]}"
    db.execute("insert into clinics (clinic_id, name) values ('clinic-t', 'Test') on conflict do nothing")
    db.execute("insert into patients (patient_id, clinic_id) values (%s, 'clinic-t')", (known,))
    prov = Provenance(adapter="test", vendor="acme", device_id="phone-x")
    at = datetime(2026, 5, 1, tzinfo=UTC)
    stranger = TimezoneChange(patient_id=f"pat-unknown-{uuid.uuid4().hex[:6]}", provenance=prov, effective_from=at,
                              tz="Europe/Berlin")
    ok = TimezoneChange(patient_id=known, provenance=prov, effective_from=at, tz="Europe/Berlin")
    produce(fast, [stranger, ok])
    wait_for(lambda: db.execute("select tz from patient_timezones where patient_id = %s", (known,)).fetchall(),
             lambda rows: rows == [("Europe/Berlin",)])
    letters = asyncio.run(read_dead_letters(fast, stranger.key(), want=1))
    assert [x["reason"] for x in letters] == ["rejected_by_database"]
    assert "foreign key" in letters[0]["detail"]


def test_dead_letters_are_summarised_without_patient_data_and_replayed_after_the_fix(
    worker: WorkerProcess, fast: Settings, db: psycopg.Connection[Any]
) -> None:
    """`rtm deadletters`: the operator sees how many records were set aside and why (never whose),
    fixes the cause (here: the patient row was missing) and replays them; the worker stores them."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    patient = f"pat-late-{uuid.uuid4().hex[:6]}"
    prov = Provenance(adapter="test", vendor="acme", device_id="phone-y")
    change = TimezoneChange(patient_id=patient, provenance=prov, effective_from=datetime(2026, 5, 1, tzinfo=UTC),
                            tz="Europe/Madrid")
    produce(fast, [change])
    assert [x["reason"] for x in asyncio.run(read_dead_letters(fast, change.key(), want=1))] == ["rejected_by_database"]

    rtm = str(Path(sys.executable).with_name("rtm"))
    env = {**os.environ, "RTM_KAFKA_BOOTSTRAP": fast.kafka_bootstrap}

    def run(*args: str) -> str:
        done = subprocess.run([rtm, "deadletters", *args], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    table = run("summary", "--since", since.isoformat())
    row = next(line for line in table.splitlines() if line.startswith("rtm.raw.timezone.v1"))
    assert row.split()[1] == "rejected_by_database" and int(row.split()[2]) >= 1
    assert patient not in table

    db.execute("insert into clinics (clinic_id, name) values ('clinic-t', 'Test') on conflict do nothing")
    db.execute("insert into patients (patient_id, clinic_id) values (%s, 'clinic-t')", (patient,))
    args = ("--reason", "rejected_by_database", "--source-topic", "rtm.raw.timezone.v1", "--since", since.isoformat())
    assert "would replay" in run("replay", *args, "--dry-run")
    out = run("replay", *args)
    assert out.startswith("replayed ") and patient not in out
    wait_for(lambda: db.execute("select tz from patient_timezones where patient_id = %s", (patient,)).fetchall(),
             lambda rows: rows == [("Europe/Madrid",)])


# --------------------------------------------------------------------------- scale-out and restarts

DERIVED = {
    "imu_batches": "select event_id, time, patient_id, frame from imu_batches",
    "exercise_sets": "select set_id, time, end_time, rep_count, rom_median_deg from exercise_sets",
    "rep_results": "select set_id, rep_index, time, rom_deg, partial from rep_results",
    "activity_minutes": "select patient_id, device_id, time, steps, worn from activity_minutes",
    "data_day_facts": "select patient_id, local_date, device_id, steps, exercise_sets, qualifying from data_day_facts",
    "stream_analyses": "select device_id, stream_id, status, sets, reps, samples from stream_analyses",
}


def _contents(settings: Settings, patients: str = "%") -> dict[str, list[tuple[Any, ...]]]:
    """Every derived table, limited to the patients whose id is LIKE `patients`."""
    with psycopg.connect(settings.dsn("reader")) as conn:
        return {name: sorted(conn.execute(q + " where patient_id like %s", (patients,)).fetchall(), key=repr)
                for name, q in DERIVED.items()}


def _settled(settings: Settings, want_batches: int, quiet_s: float = 3.0, timeout: float = 120,
             patients: str = "%", want_streams: int = 0) -> dict[str, Any]:
    """The derived tables once the patients' batches and analysed streams have all arrived and
    nothing changed for `quiet_s`. Counting only the patients' own rows matters: a worker killed
    mid-stream leaves its partitions idle until the group's session times out, which is quiet enough
    to look settled if the target could be met by other tests' rows."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        with psycopg.connect(settings.dsn("reader")) as conn:
            row = conn.execute(
                "select (select count(*) from imu_batches where patient_id like %(p)s),"
                " (select count(*) from imu_stream_queue where patient_id like %(p)s),"
                " (select count(*) from stream_analyses where patient_id like %(p)s)", {"p": patients}
            ).fetchone()
        arrived = row is not None and row[0] >= want_batches and row[1] == 0 and row[2] >= want_streams
        now = _contents(settings, patients) if arrived else None
        if now is not None and now == last:
            if time.monotonic() - stable_since >= quiet_s:
                return now
        else:
            stable_since = time.monotonic()
        last = now
        time.sleep(0.5)
    raise AssertionError(f"the pipeline did not settle: (batches, queued streams, analyses) {tuple(row or ())}, "
                         f"wanted ({want_batches}, 0, {want_streams})")


@pytest.fixture()
def fresh_db(stack_settings: Settings) -> Iterator[Any]:
    created: list[str] = []

    def make(tag: str) -> Settings:
        name = f"rtm_test_{tag}_{uuid.uuid4().hex[:6]}"
        s = stack_settings.model_copy(update={"pg_database": name, "app_id": f"{stack_settings.app_id}-{tag}",
                                              "analysis_quiet_s": 0.5, "analysis_poll_s": 0.25})
        postgres.ensure_database(s)
        migrate(s)
        created.append(name)
        return s

    yield make
    with postgres.admin_connect(stack_settings) as conn:
        for name in created:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def test_two_workers_give_what_one_gives_even_when_one_is_killed(
    fast: Settings, fresh_db: Any
) -> None:
    # Twelve patients' sessions on the shared topics; each group below reads the topics from the start
    # (this run's patients share a tag: an earlier run's are on the topics too).
    tag = f"scale{uuid.uuid4().hex[:4]}x"
    sessions = [_session(_patient(f"{tag}{i}"), 100 + i, datetime(2026, 4, 1, 14 + i % 6, tzinfo=UTC))
                for i in range(12)]
    half = len(sessions) // 2
    produce(fast, [e for m, b, _ in sessions[:half] for e in (*m, *b)])

    one, two = fresh_db("one"), fresh_db("two")
    single = start_worker(one, port=free_port(), wait=False)
    pair = [start_worker(two, port=free_port(), wait=False), start_worker(two, port=free_port(), wait=False)]
    wait_ready([single, *pair])
    try:
        # Mid-stream: the rest arrives while one of the pair dies without any clean-up.
        produce(fast, [e for m, b, _ in sessions[half:] for e in (*m, *b)])
        pair[0].kill()
        # Only this test's patients, all of their batches and streams: other tests' events (the
        # session gateway's outbox relay keeps publishing) may reach the shared topics meanwhile.
        ours = f"pat-{tag}%"
        batches = sum(len(b) for _, b, _ in sessions)
        # Each group reads every topic from the start (the whole session's events, not only ours), and
        # the survivor takes over the killed worker's share after the group's session times out: on
        # a loaded machine that took longer than two minutes once. The bound is for a stall, not a
        # speed target: what is asserted is that everything arrives, once.
        expected = _settled(one, batches, patients=ours, want_streams=len(sessions), timeout=300)
        survivor = _settled(two, batches, patients=ours, want_streams=len(sessions), timeout=300)
    finally:
        single.stop()
        for w in pair:
            w.stop()
    assert survivor == expected
    analysed = [r for r in expected["stream_analyses"] if r[0].startswith(f"imu-pat-{tag}")]
    assert len(analysed) == 12 and all(r[2] == "analysed" for r in analysed)


def test_a_restarted_worker_replays_without_changing_anything(fast: Settings, fresh_db: Any) -> None:
    target = fresh_db("replay")
    with psycopg.connect(fast.dsn("reader")) as conn:
        row = conn.execute("select count(*) from imu_batches").fetchone()
    total = int(row[0]) if row else 0
    w = start_worker(target, port=free_port())
    try:
        first = _settled(target, total)
    finally:
        w.stop()
    # A new consumer group on the same database: every topic replayed from the start.
    again = target.model_copy(update={"app_id": f"{target.app_id}-again"})
    w = start_worker(again, port=free_port())
    try:
        second = _settled(again, total)
    finally:
        w.stop()
    assert second == first


def test_worker_serves_prometheus_metrics(worker: WorkerProcess, fast: Settings) -> None:
    import urllib.request

    # Something has flowed through this worker by now (earlier tests) or will within the wait.
    produce(fast, [_activity(f"pat-metrics-{uuid.uuid4().hex[:6]}", "w-m", datetime(2026, 6, 1, tzinfo=UTC), 5, 10)])

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as r:
            return r.read().decode()

    text = wait_for(scrape, lambda t: 'rtm_events_in_total{topic="rtm.raw.activity.v1"}' in t
                    and "rtm_consumer_lag{" in t, timeout=30)
    for name in ("rtm_sink_seconds_bucket", "rtm_sink_batch_rows_bucket", "rtm_processing_latency_seconds_bucket",
                 "rtm_dead_letters_total"):
        assert name in text


def test_consumer_lag_counts_the_records_not_yet_acknowledged() -> None:
    """faust's committed offset is Kafka's (the next to read): caught up is 0, one waiting is 1."""
    from processors.agents.health import lag

    assert (lag(10, 10), lag(10, 9), lag(10, None), lag(10, 12)) == (0, 1, 10, 0)


def test_an_event_the_worker_cannot_process_is_dead_lettered_and_the_stream_goes_on(
    worker: WorkerProcess, fast: Settings, db: psycopg.Connection[Any]
) -> None:
    """An interval at the end of the calendar (a producer's bad clock) once crashed the activity
    agent on date arithmetic: its batch was never acknowledged and the partition stopped
    committing. It is dead-lettered by itself now, and the events beside it are stored."""
    patient = f"pat-clock-{uuid.uuid4().hex[:6]}"
    db.execute("insert into clinics (clinic_id, name) values ('clinic-t', 'Test') on conflict do nothing")
    db.execute("insert into patients (patient_id, clinic_id) values (%s, 'clinic-t')", (patient,))
    bad = _activity(patient, "w-clock", datetime(9999, 12, 31, 23, 0, tzinfo=UTC), 10, 50, "far")
    good = _activity(patient, "w-clock", datetime(2026, 6, 2, 12, 0, tzinfo=UTC), 10, 70, "near")
    produce(fast, [bad, good])
    wait_for(lambda: db.execute("select sum(steps) from activity_minutes where patient_id = %s",
                                (patient,)).fetchone(), lambda row: row == (70,), timeout=30)
    letters = asyncio.run(read_dead_letters(fast, bad.key(), want=1))
    assert len(letters) == 1 and letters[0]["source_topic"] == "rtm.raw.activity.v1"
    assert letters[0]["reason"] == "processing_failed" and letters[0]["detail"].startswith("OverflowError")
