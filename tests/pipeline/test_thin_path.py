"""The thinnest real path: aiokafka producer -> Tansu -> faust worker -> TimescaleDB, and back.

Everything is real: the broker and database are started by the project's own scripts and the
worker is a separate `rtm worker` process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from processors.kafka.tansu import fetch_highwaters
from processors.supervisor import WorkerProcess, start_worker
from rtm.contract import ImuBatch, decode, encode
from rtm.settings import Settings
from rtm.stack.broker import free_port
from rtm.topics import RAW_ACTIVITY, RAW_IMU
from tests.pipeline.helpers import (
    imu_batches,
    produce,
    produce_raw,
    read_dead_letters,
    step_intervals,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker(db_settings: Settings) -> Iterator[WorkerProcess]:
    w = start_worker(db_settings, port=free_port())
    yield w
    w.stop()


def _count(db: psycopg.Connection, table: str, patient: str) -> int:
    row = db.execute(f"select count(*) from {table} where patient_id = %s", (patient,)).fetchone()
    return int(row[0]) if row else 0


def _snapshot(db: psycopg.Connection, patient: str) -> tuple[list[Any], list[Any]]:
    imu = db.execute(
        "select time, event_id, device_id, stream_id, n_samples, frame, provenance from imu_batches "
        "where patient_id = %s order by time, event_id", (patient,)).fetchall()
    act = db.execute(
        "select time, end_time, event_id, steps, deleted from activity_intervals "
        "where patient_id = %s order by time, event_id", (patient,)).fetchall()
    return imu, act


def test_events_land_in_hypertables_and_the_archive_is_replayable(
    worker: WorkerProcess, db_settings: Settings, db: psycopg.Connection
) -> None:
    patient = f"pat-{uuid.uuid4().hex[:8]}"
    batches, intervals = imu_batches(patient, 5), step_intervals(patient, 3)
    produce(db_settings, [*batches, *intervals])
    wait_for(lambda: (_count(db, "imu_batches", patient), _count(db, "activity_intervals", patient)),
             lambda v: v == (5, 3))
    rows = db.execute("select event_id, frame, n_samples from imu_batches where patient_id = %s",
                      (patient,)).fetchall()
    by_id = {b.event_id: b for b in batches}
    for event_id, frame, n in rows:
        stored = decode(bytes(frame))
        assert isinstance(stored, ImuBatch)
        assert stored == by_id[event_id] and n == 500  # reprocessable bit for bit
    steps = [r[0] for r in db.execute(
        "select steps from activity_intervals where patient_id = %s order by time", (patient,))]
    assert steps == [0, 100, 200]


def test_replaying_the_same_events_changes_nothing(
    worker: WorkerProcess, db_settings: Settings, db: psycopg.Connection
) -> None:
    patient = f"pat-{uuid.uuid4().hex[:8]}"
    events = [*imu_batches(patient, 4), *step_intervals(patient, 4)]
    produce(db_settings, events)
    wait_for(lambda: (_count(db, "imu_batches", patient), _count(db, "activity_intervals", patient)),
             lambda v: v == (4, 4))
    first = _snapshot(db, patient)

    produce(db_settings, events)  # the phone resends everything, twice
    produce(db_settings, list(reversed(events)))
    # A sentinel on the same partitions: once it lands, every replayed copy before it was processed.
    sentinel_imu = imu_batches(patient, 1, device="sentinel")
    sentinel_act = step_intervals(patient, 6)[5:]
    produce(db_settings, [*sentinel_imu, *sentinel_act])
    wait_for(lambda: _count(db, "imu_batches", patient) + _count(db, "activity_intervals", patient),
             lambda v: v == 10)

    imu_after, act_after = _snapshot(db, patient)
    assert [r for r in imu_after if not r[2].startswith("sentinel")] == first[0]
    assert [r for r in act_after if r[2] != sentinel_act[0].event_id] == first[1]


def test_bad_records_go_to_the_dead_letter_topic_and_the_stream_keeps_flowing(
    worker: WorkerProcess, db_settings: Settings, db: psycopg.Connection
) -> None:
    patient = f"pat-{uuid.uuid4().hex[:8]}"
    key = patient.encode()
    garbage = b"\x00\x01 not an event"
    wrong_topic = encode(step_intervals(patient, 1)[0])  # valid event, wrong topic
    produce_raw(db_settings, [(RAW_IMU.name, key, garbage), (RAW_IMU.name, key, wrong_topic),
                              (RAW_ACTIVITY.name, key, b'{"kind": "activity_interval"}')])
    good = imu_batches(patient, 1)
    produce(db_settings, good)
    wait_for(lambda: _count(db, "imu_batches", patient), lambda v: v == 1)

    letters = asyncio.run(read_dead_letters(db_settings, key, want=3))
    reasons = sorted(letter["reason"] for letter in letters)
    assert reasons == ["invalid", "malformed", "wrong_topic"]
    originals = {base64.b64decode(letter["value_b64"]) for letter in letters}
    assert garbage in originals and wrong_topic in originals
    assert all(letter["detail"] for letter in letters)


def _table(worker: WorkerProcess) -> dict[str, dict[str, str]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/tables/device-last-seen/", timeout=5) as r:
        data: dict[str, dict[str, str]] = json.loads(r.read())
        return data


def test_table_state_comes_back_exact_after_a_worker_restart(
    db_settings: Settings, db: psycopg.Connection
) -> None:
    # Its own consumer group and table changelog, so that this worker owns every partition.
    settings = db_settings.model_copy(update={"app_id": f"{db_settings.app_id}-restart"})
    patients = [f"pat-{uuid.uuid4().hex[:8]}" for _ in range(12)]
    port = free_port()
    first = start_worker(settings, port=port)
    try:
        # Several rounds of later batches, so each changelog partition holds several updates per
        # patient: a recovery that stops early (the broker's too-low ListOffsets) restores a stale one.
        base = datetime(2026, 2, 1, 15, tzinfo=UTC)
        rounds = 4
        for round_ in range(rounds):
            produce(settings, [b for p in patients
                               for b in imu_batches(p, 1, device=f"dev-{round_ % 2}",
                                                    start=base + timedelta(minutes=round_))])
        # What the table must hold: per patient and device, the latest batch time sent.
        latest = {f"dev-{r % 2}": (base + timedelta(minutes=r)).isoformat() for r in range(rounds)}
        expected = {p: {f"{d}-{p}": t for d, t in latest.items()} for p in patients}
        wait_for(lambda: _table(first), lambda t: {p: t.get(p) for p in patients} == expected)
    finally:
        first.stop()
    second = start_worker(settings, port=port)
    try:
        restored = _table(second)
        assert {p: restored.get(p) for p in patients} == expected
    finally:
        second.stop()


def test_high_water_marks_come_from_fetch_responses(stack_settings: Settings) -> None:
    topic = f"hw-{uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[dict[TopicPartition, int], int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack_settings.kafka_bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(topic, 3, 1)])
        await admin.close()
        items = [(topic, f"k{i % 17}".encode(), b"x") for i in range(300)]
        await asyncio.to_thread(produce_raw, stack_settings, items)
        tps = [TopicPartition(topic, p) for p in range(3)]
        return await fetch_highwaters(stack_settings.kafka_bootstrap, tps), len(items)

    marks, sent = asyncio.run(scenario())
    assert sum(marks.values()) == sent
    assert all(v > 0 for v in marks.values())
