"""Workers survive their dependencies: a database restart, a lock that blocks them, a deadlock, a
SIGKILL; they say when they cannot work (/ready/), exit promptly on SIGTERM, and the supervisor
restarts them. Real `rtm worker` processes, the real database cluster (restarted by the project's
stack scripts) and a real broker."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from eligibility.store import clear_dirty
from processors.supervisor import Supervisor, WorkerProcess, start_worker
from rtm.settings import Settings
from rtm.stack import postgres
from rtm.stack.broker import free_port
from tests.pipeline.helpers import produce, step_intervals, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def quick(db_settings: Settings) -> Settings:
    """Timers that run often (so that a database outage meets them) and short back-offs."""
    return db_settings.model_copy(update={
        "app_id": f"{db_settings.app_id}-res", "analysis_quiet_s": 0.5, "eligibility_interval_s": 1.0,
        "retry_max_backoff_s": 2.0, "worker_stop_timeout_s": 5.0, "pg_connect_timeout_s": 2.0,
    })


def _steps_stored(settings: Settings, patient: str) -> int:
    with psycopg.connect(settings.dsn("reader"), connect_timeout=3) as conn:
        row = conn.execute("select coalesce(sum(steps), 0) from activity_intervals where patient_id = %s"
                           " and not deleted", (patient,)).fetchone()
    return int(row[0]) if row else 0


def _readiness(w: WorkerProcess) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{w.port}/ready/", timeout=3) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError as exc:
        return 0, {"error": str(exc)}


def test_a_worker_survives_a_database_restart_and_says_it_cannot_work_meanwhile(quick: Settings) -> None:
    w = start_worker(quick, port=free_port())
    before, during = f"pat-dbr-a-{uuid.uuid4().hex[:6]}", f"pat-dbr-b-{uuid.uuid4().hex[:6]}"
    try:
        produce(quick, step_intervals(before, 3))
        wait_for(lambda: _steps_stored(quick, before), lambda n: n == 300)
        postgres.down(quick)
        try:
            # Every timer and agent now meets a refused connection: not ready, with the reason.
            _, body = wait_for(lambda: _readiness(w), lambda r: r[0] == 503, timeout=20)
            assert body["failing"], body
            produce(quick, step_intervals(during, 4))
            time.sleep(6)  # several timer runs and retries against the stopped database
            assert w.proc.poll() is None, f"the worker died while the database was down; see {w.log}"
        finally:
            postgres.up(quick)
        # Everything sent while the database was away is stored once it is back.
        assert wait_for(lambda: _steps_stored(quick, during), lambda n: n == 600, timeout=60) == 600
        assert wait_for(lambda: _readiness(w), lambda r: r[0] == 200, timeout=30)[1]["ready"] is True
        assert w.proc.poll() is None
    finally:
        w.stop()


def test_sigterm_stops_a_worker_promptly_even_while_a_database_call_is_blocked(quick: Settings) -> None:
    w = start_worker(quick, port=free_port())
    release = threading.Event()

    def hold_lock() -> None:
        # An operator's (or a migration's) lock: every analysis poll now blocks inside the database.
        with psycopg.connect(quick.dsn("owner")) as conn:
            conn.execute("lock table imu_stream_queue in access exclusive mode")
            release.wait(60)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        time.sleep(3)  # the analysis timer is blocked on the lock by now
        started = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)
        try:
            w.proc.wait(quick.worker_stop_timeout_s + 10)
        except Exception:
            w.kill()
            raise AssertionError(f"the worker ignored SIGTERM for {quick.worker_stop_timeout_s + 10} s") from None
        assert time.monotonic() - started < quick.worker_stop_timeout_s + 10
    finally:
        release.set()
        holder.join()
        w.stop()


def test_clearing_eligibility_marks_does_not_deadlock_with_a_sink_transaction(db_settings: Settings) -> None:
    a, b = f"pat-dl-a-{uuid.uuid4().hex[:6]}", f"pat-dl-b-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(db_settings.dsn("writer"), autocommit=True) as conn:
        conn.execute("select eligibility_mark_dirty(p, 'test') from unnest(%s::text[]) as p", ([a, b],))
        claimed = [(str(p), int(s)) for p, s in conn.execute(
            "select patient_id, mark_seq from eligibility_dirty_patients where patient_id = any(%s)", ([a, b],))]
    # B first, then A: the order in which the recompute loop's delete meets them.
    claimed.sort(key=lambda c: c[0] != b)
    errors: list[BaseException] = []
    with psycopg.connect(db_settings.dsn("writer")) as sink_tx:
        # A sink transaction's triggers mark A (and hold its row) ...
        sink_tx.execute("select eligibility_mark_dirty(%s, 'sink')", (a,))

        def recompute_loop_clears() -> None:
            try:
                with psycopg.connect(db_settings.dsn("writer"), autocommit=True) as conn:
                    clear_dirty(conn, claimed)
            except BaseException as exc:
                errors.append(exc)

        clearer = threading.Thread(target=recompute_loop_clears)
        clearer.start()
        time.sleep(0.5)  # the delete has taken B by now, and waits for A if it waits at all
        try:
            # ... then marks B: waiting for the delete that waits for A deadlocked here.
            sink_tx.execute("select eligibility_mark_dirty(%s, 'sink')", (b,))
            sink_tx.commit()
        except psycopg.errors.DeadlockDetected as exc:
            errors.append(exc)
        clearer.join(10)
    assert not errors, errors
    with psycopg.connect(db_settings.dsn("writer")) as conn:
        left = dict(conn.execute("select patient_id, mark_seq from eligibility_dirty_patients "
                                 "where patient_id = any(%s)", ([a, b],)).fetchall())
    # Both were marked again after the claim: both stay queued, with their newer marks.
    assert set(left) == {a, b}
    assert all(left[p] > s for p, s in claimed)


def test_recompute_loop_survives_clearing_a_mark_under_a_concurrent_sink(db_settings: Settings) -> None:
    """clear_dirty skips a mark row another transaction holds, rather than waiting on it."""
    p = f"pat-dl-c-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(db_settings.dsn("writer"), autocommit=True) as conn:
        conn.execute("select eligibility_mark_dirty(%s, 'test')", (p,))
        row = conn.execute("select mark_seq from eligibility_dirty_patients where patient_id = %s", (p,)).fetchone()
    assert row is not None
    with psycopg.connect(db_settings.dsn("writer")) as holder:
        holder.execute("select 1 from eligibility_dirty_patients where patient_id = %s for update", (p,))
        with psycopg.connect(db_settings.dsn("writer"), autocommit=True) as conn:
            conn.execute("set lock_timeout = '2s'")
            started = time.monotonic()
            clear_dirty(conn, [(p, int(row[0]))])
            assert time.monotonic() - started < 1.0
        holder.rollback()


@pytest.fixture()
def supervised(quick: Settings) -> Iterator[Supervisor]:
    sup = Supervisor(quick.model_copy(update={"app_id": f"{quick.app_id}-sup"}), ports=[free_port()],
                     check_interval_s=0.5).start()
    yield sup
    sup.stop()


def test_the_supervisor_restarts_a_killed_worker(supervised: Supervisor, quick: Settings) -> None:
    first = supervised.workers[0]
    first.kill()
    again = wait_for(lambda: supervised.workers, lambda ws: bool(ws) and ws[0] is not first, timeout=20)
    wait_for(lambda: again[0].ready(), bool, timeout=90)
    assert supervised.restarts == 1
    patient = f"pat-sup-{uuid.uuid4().hex[:6]}"
    produce(quick, step_intervals(patient, 2))
    assert wait_for(lambda: _steps_stored(quick, patient), lambda n: n == 100, timeout=60) == 100


def test_a_recording_that_cannot_be_analysed_is_rejected_without_stopping_the_worker(quick: Settings) -> None:
    w = start_worker(quick, port=free_port())
    device = f"imu-broken-{uuid.uuid4().hex[:6]}"
    try:
        with psycopg.connect(quick.dsn("writer"), autocommit=True) as conn:
            # A stored batch whose frame no longer decodes (written by an older, buggy version, say).
            conn.execute(
                """insert into imu_batches (time, event_id, patient_id, device_id, stream_id, body_site,
                       sample_rate_hz, n_samples, duration_s, schema_version, frame, provenance)
                   values ('2026-02-01 10:00Z', %s, 'pat-broken', %s, 'rec-1', 'shank_left', 100, 1, 0.01,
                           1, 'not a frame', '{}')""", (uuid.uuid4(), device))
            conn.execute("insert into imu_stream_queue (device_id, stream_id, patient_id, first_time) "
                         "values (%s, 'rec-1', 'pat-broken', '2026-02-01 10:00Z')", (device,))
        row = wait_for(lambda: _one(quick, "select status, detail from stream_analyses where device_id = %s", device),
                       lambda r: r is not None, timeout=30)
        assert row[0] == "rejected" and "DecodeError" in row[1]
        assert _one(quick, "select count(*) from imu_stream_queue where device_id = %s", device) == (0,)
        assert w.proc.poll() is None
        patient = f"pat-after-{uuid.uuid4().hex[:6]}"
        produce(quick, step_intervals(patient, 2))
        assert wait_for(lambda: _steps_stored(quick, patient), lambda n: n == 100) == 100
    finally:
        w.stop()


def _one(settings: Settings, query: str, *args: object) -> Any:
    with psycopg.connect(settings.dsn("reader")) as conn:
        return conn.execute(query, args).fetchone()
