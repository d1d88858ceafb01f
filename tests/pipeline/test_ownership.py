"""Ownership on every write path of the sink: a session, a recording and a source record can only
be touched by the device and patient that own them (a violation is dead-lettered with its reason
and changes nothing), and an edited phone record replaces its earlier version wherever its start
moved (a deletion withdraws the version in force). Real worker, broker and database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from device_adapters.context import DeviceContext
from device_adapters.phone.health_connect import StepsRecord, to_deletion, to_interval
from processors.sink.raw import OWNERSHIP
from processors.supervisor import WorkerProcess, start_worker
from rtm.contract import ActivityInterval, Provenance, SessionMarker
from rtm.settings import Settings
from rtm.stack.broker import PrivateBroker, free_port
from tests.pipeline.helpers import imu_batches, produce, read_dead_letters, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own(module_db: Settings) -> Iterator[Settings]:
    """A broker and a database of this module's own: the conflicts sent here are between
    partitions, so a later replay of the session's topics (other modules' new consumer groups)
    could meet them in another order and give another first writer."""
    with PrivateBroker(module_db.model_copy(update={"app_id": f"{module_db.app_id}-own",
                                                    "analysis_quiet_s": 0.5})) as broker:
        yield broker.settings


@pytest.fixture(scope="module")
def worker(own: Settings) -> Iterator[WorkerProcess]:
    w = start_worker(own, port=free_port())
    yield w
    w.stop()


def _one(settings: Settings, query: str, *args: object) -> Any:
    with psycopg.connect(settings.dsn("reader")) as conn:
        return conn.execute(query, args).fetchone()


def _violations(settings: Settings, patient: str, want: int) -> list[dict[str, Any]]:
    found = asyncio.run(read_dead_letters(settings, patient.encode(), want))
    return [d for d in found if d["reason"] == OWNERSHIP]


def _tag(name: str) -> str:
    return f"pat-own-{name}-{uuid.uuid4().hex[:6]}"


def test_a_device_cannot_rewrite_another_patients_session(worker: WorkerProcess, own: Settings) -> None:
    a, b = _tag("sa"), _tag("sb")
    session = f"sess-{uuid.uuid4().hex[:8]}"
    at = datetime(2026, 5, 4, 15, tzinfo=UTC)

    def marker(patient: str, device: str, phase: str, when: datetime) -> SessionMarker:
        return SessionMarker(patient_id=patient, provenance=Provenance(adapter="t", vendor="acme", device_id=device),
                             session_id=session, phase=phase, at=when, exercise="knee_extension")

    produce(own, [marker(a, f"imu-{a}", "start", at), marker(a, f"imu-{a}", "end", at + timedelta(minutes=20))])
    wait_for(lambda: _one(own, "select ended_at from exercise_sessions where session_id = %s", session),
             lambda r: r is not None and r[0] is not None)
    # Clinic B's device names clinic A's session id: another start and end, far away.
    produce(own, [marker(b, f"imu-{b}", "start", at - timedelta(days=3)),
                  marker(b, f"imu-{b}", "end", at + timedelta(days=3))])
    dead = wait_for(lambda: _violations(own, b, 2), lambda d: len(d) == 2, timeout=30)
    assert all(session in d["detail"] for d in dead)
    row = _one(own, "select patient_id, device_id, started_at, ended_at from exercise_sessions where session_id = %s",
               session)
    assert row == (a, f"imu-{a}", at, at + timedelta(minutes=20))


def test_a_batch_cannot_join_another_patients_recording(worker: WorkerProcess, own: Settings) -> None:
    a, b = _tag("ra"), _tag("rb")
    first, second = imu_batches(a, 2, samples=100)
    produce(own, [first])
    wait_for(lambda: _one(own, "select count(*) from imu_batches where patient_id = %s", a), lambda r: r[0] == 1)
    # The same device and recording, under another patient's id.
    forged = second.model_copy(update={"patient_id": b, "event_id": None})
    forged = type(second).model_validate(forged.model_dump())
    produce(own, [forged])
    dead = wait_for(lambda: _violations(own, b, 1), lambda d: len(d) == 1, timeout=30)
    assert "recording" in dead[0]["detail"]
    assert _one(own, "select count(*) from imu_batches where patient_id = %s", b)[0] == 0
    assert _one(own, "select count(*) from imu_batches where device_id = %s", f"imu-{a}")[0] == 1


def _steps(settings: Settings, patient: str) -> tuple[int, int, int]:
    """Steps of a patient's records in force, of their minutes, and of their data days."""
    with psycopg.connect(settings.dsn("reader")) as conn:
        intervals = conn.execute("select coalesce(sum(steps), 0) from activity_intervals "
                                 "where patient_id = %s and not deleted", (patient,)).fetchone()
        minutes = conn.execute("select coalesce(sum(steps), 0) from activity_minutes where patient_id = %s",
                               (patient,)).fetchone()
        days = conn.execute("select coalesce(sum(steps), 0) from data_day_facts where patient_id = %s",
                            (patient,)).fetchone()
    assert intervals and minutes and days
    return int(intervals[0]), int(minutes[0]), int(days[0])


def _hc(record_id: str, start: datetime, minutes: int, count: int, modified: datetime) -> StepsRecord:
    return StepsRecord.model_validate({
        "startTime": start.isoformat(), "endTime": (start + timedelta(minutes=minutes)).isoformat(),
        "count": count, "metadata": {"id": record_id, "lastModifiedTime": modified.isoformat()},
    })


def test_an_edited_health_connect_record_whose_start_moved_replaces_the_first_version(
    worker: WorkerProcess, own: Settings
) -> None:
    p = _tag("hc")
    ctx = DeviceContext(patient_id=p, episode_id=None, device_id=f"phone-{p}")
    start = datetime(2026, 5, 6, 10, tzinfo=UTC)
    v1 = to_interval(_hc("hc-rec-1", start, 30, 1000, start + timedelta(hours=1)), ctx)
    produce(own, [v1])
    assert wait_for(lambda: _steps(own, p), lambda s: s[0] == 1000) == (1000, 1000, 1000)
    # The user edits the record in Health Connect: it now starts five minutes later.
    v2 = to_interval(_hc("hc-rec-1", start + timedelta(minutes=5), 30, 1000, start + timedelta(hours=2)), ctx)
    assert v2.id == v1.id  # the same record
    produce(own, [v2])
    wait_for(lambda: _one(own, "select count(*) from activity_intervals where patient_id = %s", p),
             lambda r: r[0] == 2)
    assert wait_for(lambda: _steps(own, p), lambda s: s == (1000, 1000, 1000)) == (1000, 1000, 1000)
    in_force = _one(own, "select time from activity_intervals where patient_id = %s and not deleted", p)
    assert in_force == (v2.start,)
    # A deletion withdraws the version in force, whatever start it names.
    produce(own, [to_deletion("hc-rec-1", v1.start, v1.end, ctx)])
    assert wait_for(lambda: _steps(own, p), lambda s: s == (0, 0, 0)) == (0, 0, 0)


def test_another_patients_record_id_cannot_be_edited(worker: WorkerProcess, own: Settings) -> None:
    a, b = _tag("ka"), _tag("kb")
    start = datetime(2026, 5, 7, 9, tzinfo=UTC)
    prov = Provenance(adapter="health-connect", vendor="android", device_id=f"phone-{a}")

    def record(patient: str, steps: int) -> ActivityInterval:
        return ActivityInterval(patient_id=patient, provenance=prov, source="health_connect",
                                source_record_id="shared-1", start=start, end=start + timedelta(minutes=30),
                                steps=steps)

    produce(own, [record(a, 700)])
    wait_for(lambda: _steps(own, a), lambda s: s[0] == 700)
    produce(own, [record(b, 5)])  # the same device and record, another patient
    dead = wait_for(lambda: _violations(own, b, 1), lambda d: len(d) == 1, timeout=30)
    assert "record" in dead[0]["detail"]
    assert _steps(own, a)[0] == 700
    assert _one(own, "select count(*) from activity_intervals where patient_id = %s", b)[0] == 0
