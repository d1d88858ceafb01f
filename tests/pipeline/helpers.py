"""Helpers for tests that drive the real broker and workers."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer

from rtm.contract import ActivityInterval, Event, ImuBatch, Provenance, encode
from rtm.kafka import make_producer
from rtm.settings import Settings
from rtm.topics import DEAD_LETTER, TOPIC_BY_KIND

T = TypeVar("T")


async def _send(settings: Settings, items: Iterable[tuple[str, bytes, bytes]]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for topic, key, value in items:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def produce(settings: Settings, events: Iterable[Event]) -> None:
    asyncio.run(_send(settings, [(TOPIC_BY_KIND[e.kind].name, e.key(), encode(e)) for e in events]))


def produce_raw(settings: Settings, items: Iterable[tuple[str, bytes, bytes]]) -> None:
    asyncio.run(_send(settings, items))


def wait_for(probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s; last value: {value!r}")
        time.sleep(0.2)


def imu_batches(patient: str, n: int, device: str = "imu", start: datetime | None = None,
                samples: int = 500) -> list[ImuBatch]:
    """n consecutive batches of one recording from the patient's own device `{device}-{patient}`
    (a batch's id is its device, stream and first-sample time)."""
    rng = np.random.default_rng(zlib.crc32(patient.encode()))
    t0 = start or datetime(2026, 2, 1, 15, tzinfo=UTC)
    prov = Provenance(adapter="test", vendor="acme", device_id=f"{device}-{patient}")
    return [
        ImuBatch(patient_id=patient, provenance=prov, stream_id="rec-1", body_site="shank_left",
                 t0=t0 + timedelta(seconds=5 * i), sample_rate_hz=100.0,
                 acc=rng.normal(0, 1, (samples, 3)), gyr=rng.normal(0, 1, (samples, 3)))
        for i in range(n)
    ]


def step_intervals(patient: str, n: int, start: datetime | None = None) -> list[ActivityInterval]:
    t0 = start or datetime(2026, 2, 1, 13, tzinfo=UTC)
    prov = Provenance(adapter="health_connect", vendor="android", device_id=f"phone-{patient}")
    return [
        ActivityInterval(patient_id=patient, provenance=prov, source="health_connect",
                         source_record_id=f"{patient}-{i}", start=t0 + timedelta(hours=i),
                         end=t0 + timedelta(hours=i, minutes=59), steps=100 * i)
        for i in range(n)
    ]


async def read_dead_letters(settings: Settings, key: bytes, want: int) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(DEAD_LETTER.name, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        for _ in range(100):
            batch = await consumer.getmany(timeout_ms=200)
            found += [orjson.loads(m.value) for msgs in batch.values() for m in msgs if m.key == key]
            if len(found) >= want:
                break
    finally:
        await consumer.stop()
    return found
