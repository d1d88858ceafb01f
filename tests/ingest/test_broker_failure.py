"""The `broker` acceptance mode (Apache Kafka): a broker that dies while a client uploads gets 503
with Retry-After, nothing recorded as accepted, and the resend after recovery lands exactly once.
Uses a private broker, never the shared one."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from device_adapters.cloud.fakes.polar import PolarFake
from rtm.contract import decode
from rtm.settings import Settings
from rtm.stack.broker import PrivateBroker
from rtm.topics import RAW_IMU
from tests.ingest.conftest import build_client, dedup_rows, enrol, frames, imu_batch, make_care, read_topic

pytestmark = pytest.mark.integration
FRAME = "application/vnd.rtm.imu-frame"


def test_broker_stopped_mid_upload(db_settings: Settings, polar_fake: PolarFake) -> None:
    broker = PrivateBroker(db_settings).start()
    try:
        care = make_care(db_settings)
        with build_client(broker.settings, polar_fake, publish_timeout_s=2.0, acceptance="broker") as client:
            dev = enrol(client, care)
            before = imu_batch(dev, stream="a")
            ok = client.post(
                "/v1/events", content=frames(before), headers={**dev.headers, "Content-Type": FRAME}
            )
            assert ok.status_code == 202
            batches = [imu_batch(dev, stream=f"b{i}", n=2000) for i in range(4)]
            payload = frames(*batches)

            def body() -> Iterator[bytes]:
                yield payload[: len(payload) // 2]
                broker.stop(hard=True)  # the broker dies while the body is on its way
                yield payload[len(payload) // 2 :]

            started = time.monotonic()
            r = client.post("/v1/events", content=body(), headers={**dev.headers, "Content-Type": FRAME})
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "broker-unavailable"
            assert int(r.headers["retry-after"]) >= 1
            assert time.monotonic() - started < 10
            assert dedup_rows(broker.settings, [b.id for b in batches]) == 0  # nothing recorded as accepted

            # Tansu keeps topics in memory: the restarted broker is empty. The resend lands; copies the
            # producer still held from the failed attempt may land too (at-least-once): every message
            # is a whole event, and the downstream upserts by event id make it exactly-once in effect.
            broker = PrivateBroker(db_settings, port=broker.port).start()
            deadline = time.monotonic() + 20
            while True:
                again = client.post(
                    "/v1/events", content=payload, headers={**dev.headers, "Content-Type": FRAME}
                )
                if again.status_code == 202 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert again.status_code == 202, again.text
            assert again.json()["accepted"] == 4
            stored = [
                decode(v).id for v in read_topic(broker.settings, RAW_IMU.name, care.patient_id.encode())
            ]
            assert set(stored) == {b.id for b in batches}
            assert dedup_rows(broker.settings, [b.id for b in batches]) == 4
            third = client.post("/v1/events", content=payload, headers={**dev.headers, "Content-Type": FRAME})
            assert third.json()["duplicates"] == 4
    finally:
        broker.stop()
