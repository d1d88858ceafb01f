"""Durable acceptance (the outbox, the default mode): 2xx means the event is in PostgreSQL and will
reach the database tables even if the broker loses everything. Real broker (a private one, so
that stopping it touches no other test), real database, real worker processes."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from psycopg_pool import AsyncConnectionPool

from device_adapters.cloud.fakes.polar import PolarFake
from ingest.outbox import Relay
from processors.supervisor import WorkerProcess, start_worker
from rtm.settings import Settings
from rtm.stack.broker import PrivateBroker, free_port
from rtm.topics import RAW_IMU
from tests.conftest import fresh_database
from tests.ingest.conftest import build_client, enrol, frames, gateway_config, imu_batch, make_care

pytestmark = pytest.mark.integration
FRAME = "application/vnd.rtm.imu-frame"


@pytest.fixture()
def own_db(stack_settings: Settings) -> Iterator[Settings]:
    """A database of this test's own: every gateway on a database relays its outbox, and the
    session's gateway publishes to the session's broker, not to the one this test restarts."""
    with fresh_database(stack_settings, "outbox_") as settings:
        yield settings


@pytest.fixture()
def broker(own_db: Settings) -> Iterator[PrivateBroker]:
    b = PrivateBroker(own_db).start()
    yield b
    b.stop()


def _fast(settings: Settings) -> Settings:
    return settings.model_copy(update={"app_id": f"{settings.app_id}-outbox-{uuid.uuid4().hex[:4]}",
                                       "analysis_quiet_s": 3600.0})


def _partitions(settings: Settings, topic: str) -> int:
    async def run() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics([topic])
            return len(described[0]["partitions"])
        finally:
            await admin.close()

    return asyncio.run(run())


def _worker(settings: Settings) -> WorkerProcess:
    # A free port can be taken by another process before the worker binds it: try another one.
    try:
        return start_worker(settings, port=free_port())
    except RuntimeError:
        return start_worker(settings, port=free_port())


def _stored(db: psycopg.Connection[Any], ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    rows = db.execute(
        "select event_id, count(*) from imu_batches where event_id = any(%s) group by event_id", (ids,)
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def test_every_acknowledged_event_is_stored_once_across_a_broker_restart(
    own_db: Settings, broker: PrivateBroker, polar_fake: PolarFake
) -> None:
    settings = _fast(broker.settings)
    care = make_care(own_db)
    db = psycopg.connect(own_db.dsn("writer"), autocommit=True)
    worker: WorkerProcess | None = _worker(settings)
    acknowledged: list[uuid.UUID] = []
    statuses: dict[int, int] = {}
    stop = threading.Event()
    try:
        with build_client(settings, polar_fake, publish_timeout_s=1.0, outbox_republish_after_s=2.0,
                          outbox_poll_s=0.2, outbox_failure_backoff_max_s=1.0,
                          outbox_republish_max_s=5.0) as client:
            dev = enrol(client, care)
            t0 = datetime.now(UTC) - timedelta(hours=2)

            def load() -> None:
                i = 0
                while not stop.is_set():
                    batch = imu_batch(dev, t0=t0 + timedelta(seconds=3 * i), n=200, stream="restart")
                    r = client.post("/v1/events", content=frames(batch),
                                    headers={**dev.headers, "Content-Type": FRAME})
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if r.status_code == 202:
                        acknowledged.append(batch.id)
                    i += 1
                    time.sleep(0.02)

            loader = threading.Thread(target=load, daemon=True)
            loader.start()
            time.sleep(2.0)
            # The worker falls behind (here: dies), so acknowledged events sit in the broker only;
            # then the broker goes, losing its memory-only topics, while uploads continue.
            assert worker is not None
            worker.kill()
            worker = None
            time.sleep(1.0)
            at_stop = len(acknowledged)
            broker.stop()
            time.sleep(1.0)
            ready = client.get("/readyz")  # the broker is away, acceptance is not: still ready
            assert ready.status_code == 200 and ready.json()["checks"]["broker"] == "unreachable", ready.text
            time.sleep(1.0)
            during = len(acknowledged) - at_stop
            broker.start()
            worker = _worker(settings)
            time.sleep(2.0)
            stop.set()
            loader.join(timeout=30)
            assert during > 0, "uploads must be accepted while the broker is down"
            assert statuses.get(202, 0) == len(acknowledged) and set(statuses) == {202}, statuses

            ids = list(acknowledged)
            deadline = time.monotonic() + 90
            while len(stored := _stored(db, ids)) < len(set(ids)) and time.monotonic() < deadline:
                time.sleep(0.5)
            missing = set(ids) - set(stored)
            state = db.execute(
                "select attempts, next_attempt_at - now(), published_at is not null, stored_at is not null, "
                "now() - created_at from ingest_outbox where event_id = any(%s) limit 5", (list(missing),)
            ).fetchall()
            assert not missing, (
                f"{len(missing)} of {len(set(ids))} acknowledged events never stored; outbox rows: {state}; "
                f"partitions: {_partitions(settings, RAW_IMU.name)}"
            )
            assert all(n == 1 for n in stored.values())
            assert len(ids) == len(set(ids))
            # The outbox knows every one of them is stored, and so did the enrolment's assignment.
            unstored = db.execute(
                "select count(*) from ingest_outbox where event_id = any(%s) and stored_at is null", (ids,)
            ).fetchone()
            assert unstored is not None and unstored[0] == 0
            assigned = db.execute(
                "select count(*) from device_assignments where device_id = %s", (dev.device_id,)
            ).fetchone()
            assert assigned is not None and assigned[0] == 1
            assert _partitions(settings, RAW_IMU.name) == RAW_IMU.partitions
            metrics = client.get("/metrics").text
            assert "rtm_ingest_outbox_depth" in metrics
            assert "rtm_ingest_outbox_oldest_unstored_seconds" in metrics
    finally:
        stop.set()
        db.close()
        if worker is not None:
            worker.stop()


def test_events_the_broker_lost_are_republished_as_soon_as_it_is_back(
    own_db: Settings, broker: PrivateBroker, polar_fake: PolarFake
) -> None:
    """Events the broker acknowledged and then lost (crashed before any worker consumed them) are
    not left to wait out their republish back-off (here an hour): the first publish that
    succeeds after a broker failure makes every unstored row due at once."""
    settings = _fast(broker.settings)
    care = make_care(own_db)
    db = psycopg.connect(own_db.dsn("writer"), autocommit=True)
    worker: WorkerProcess | None = None
    try:
        with build_client(settings, polar_fake, publish_timeout_s=1.0, outbox_republish_after_s=3600.0,
                          outbox_poll_s=0.2, outbox_failure_backoff_s=0.2,
                          outbox_failure_backoff_max_s=0.5) as client:
            dev = enrol(client, care)
            t0 = datetime.now(UTC) - timedelta(hours=2)

            def upload(i: int) -> uuid.UUID:
                batch = imu_batch(dev, t0=t0 + timedelta(seconds=3 * i), n=100, stream="lost")
                r = client.post("/v1/events", content=frames(batch), headers={**dev.headers, "Content-Type": FRAME})
                assert r.status_code == 202, r.text
                return batch.id

            before = [upload(i) for i in range(5)]  # published, acknowledged by the broker, unconsumed
            time.sleep(1.0)  # the fast path has published them
            broker.stop(hard=True)  # SIGKILL: the memory-only topics are gone
            during = [upload(i) for i in range(5, 8)]  # the fast path fails: a broker failure seen
            broker.start()
            worker = _worker(settings)
            ids = before + during
            deadline = time.monotonic() + 60
            while len(stored := _stored(db, ids)) < len(ids) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert set(stored) == set(ids), f"{len(set(ids) - set(stored))} of {len(ids)} never stored"
            assert all(n == 1 for n in stored.values())
            assert "rtm_ingest_outbox_redue_total" in client.get("/metrics").text
    finally:
        db.close()
        if worker is not None:
            worker.stop()


def test_relays_of_several_gateways_claim_disjoint_rows(own_db: Settings) -> None:
    """Replicas scanning one outbox: each due row is claimed by exactly one relay at a time (FOR
    UPDATE SKIP LOCKED, leased by moving next_attempt_at), and a claimed row is not due again."""
    ids = [uuid.uuid4() for _ in range(300)]
    with psycopg.connect(own_db.dsn("writer"), autocommit=True) as conn:
        conn.execute(
            """insert into ingest_outbox (event_id, digest, topic, key, value, next_attempt_at)
               select e, '\\x00', 't', 'k', 'v', now() - interval '1 s' from unnest(%s::uuid[]) as e""",
            (ids,),
        )

    async def run() -> list[list[uuid.UUID]]:
        cfg = gateway_config(outbox_batch=100)
        pools = [AsyncConnectionPool(own_db.dsn("writer"), min_size=1, max_size=2, open=False,
                                     kwargs={"autocommit": True}) for _ in range(3)]
        for p in pools:
            await p.open(wait=True)
        try:
            relays = [Relay(p, None, own_db, cfg) for p in pools]  # type: ignore[arg-type]
            claims = await asyncio.gather(*(r._claim() for r in relays for _ in range(2)))
            again = await asyncio.gather(*(r._claim() for r in relays))
            assert all(not c for c in again), "claimed rows must not be due again within their lease"
            return [[row.event_id for row in c] for c in claims]
        finally:
            for p in pools:
                await p.close()

    claimed = [e for c in asyncio.run(run()) for e in c]
    assert sorted(claimed) == sorted(ids)  # every row once, none twice
