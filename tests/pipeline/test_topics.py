"""faust's own topics are created up front with the right partition counts, and after a restart of
the development broker (which loses every topic) the workers create them again before they
consume: no topic comes back with the broker's default partition count."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.request
import uuid

import psycopg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from processors.state import patient_partition
from processors.supervisor import Supervisor, start_worker, wait_ready
from rtm.settings import Settings
from rtm.stack.broker import PrivateBroker, ensure_topics, free_port, partition_counts
from rtm.topics import RAW_IMU, group_topics, internal_topics
from tests.pipeline.helpers import imu_batches, produce, wait_for

pytestmark = pytest.mark.integration


def test_internal_topics_are_the_ones_the_faust_app_uses() -> None:
    import processors.agents  # noqa: F401  (registers the tables)
    from processors.app import app

    used = {(t.changelog_topic.get_topic_name(), t.partitions) for t in app.tables.values()}
    used.add((f"{app.conf.id}-__assignor-__leader", 1))
    assert used == {(t.name, t.partitions) for t in internal_topics(app.conf.id)}


async def _counts(settings: Settings) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        return await partition_counts(admin, [t.name for t in group_topics(settings.app_id)])
    finally:
        await admin.close()


def test_ensure_topics_creates_the_changelogs_with_the_tables_partition_count(stack_settings: Settings) -> None:
    group = stack_settings.model_copy(update={"app_id": f"rtm-test-{uuid.uuid4().hex[:6]}-tp"})
    asyncio.run(ensure_topics(group))
    counts = asyncio.run(_counts(group))
    assert counts[f"{group.app_id}-device-last-seen-changelog"] == RAW_IMU.partitions == 8
    assert counts == {t.name: t.partitions for t in group_topics(group.app_id)}


def _stored(settings: Settings, patients: list[str]) -> int:
    with psycopg.connect(settings.dsn("reader")) as conn:
        row = conn.execute("select count(*) from imu_batches where patient_id = any(%s)", (patients,)).fetchone()
    return int(row[0]) if row else 0


def _last_seen(port: int) -> dict[str, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/tables/device-last-seen/", timeout=3) as r:
            data: dict[str, dict[str, str]] = json.loads(r.read())
            return data
    except OSError:
        return {}


def test_after_a_broker_restart_the_worker_recreates_its_topics_and_carries_on(module_db: Settings) -> None:
    group = module_db.model_copy(update={"app_id": f"{module_db.app_id}-brk", "worker_stop_timeout_s": 5.0,
                                           "topic_check_interval_s": 1.0})
    # One patient per partition of the IMU topic (and of the table's changelog).
    names = (f"pat-brk-{uuid.uuid4().hex[:4]}-{i}" for i in itertools.count())
    by_partition: dict[int, str] = {}
    while len(by_partition) < RAW_IMU.partitions:
        p = next(names)
        by_partition.setdefault(patient_partition(p, RAW_IMU.partitions), p)
    patients = list(by_partition.values())
    batches = {p: imu_batches(p, 2, samples=100) for p in patients}

    with PrivateBroker(group) as broker:
        s = broker.settings
        sup = Supervisor(s, ports=[free_port()], check_interval_s=0.5).start()
        try:
            produce(s, [b[0] for b in batches.values()])
            wait_for(lambda: _stored(s, patients), lambda n: n == len(patients), timeout=60)

            broker.stop(hard=True)
            broker.start(create_topics=False)  # back, with no topic at all
            want = {t.name: t.partitions for t in group_topics(s.app_id)}
            assert wait_for(lambda: asyncio.run(_counts(s)), lambda c: c == want, timeout=60) == want
            # The worker restarted itself to consume from the new topics; it is ready again.
            wait_for(lambda: sup.restarts, lambda n: n >= 1, timeout=60)
            wait_for(lambda: bool(sup.workers) and sup.workers[0].ready(), bool, timeout=90)

            produce(s, [b[1] for b in batches.values()])
            wait_for(lambda: _stored(s, patients), lambda n: n == 2 * len(patients), timeout=60)
            # Table writes reach every changelog partition (the crash was on partitions 4 to 7).
            port = sup.workers[0].port
            seen = wait_for(lambda: _last_seen(port),
                            lambda t: all(p in t for p in patients), timeout=30)
            for p in patients:
                assert seen[p][f"imu-{p}"] == batches[p][1].t0.isoformat()
            assert asyncio.run(_counts(s)) == want
            assert sup.workers[0].proc.poll() is None
        finally:
            sup.stop()


def test_the_group_recovers_after_every_worker_is_killed_without_a_new_group_id(module_db: Settings) -> None:
    group = module_db.model_copy(update={"app_id": f"{module_db.app_id}-grp"})
    first, later = (f"pat-grp-{uuid.uuid4().hex[:6]}-{i}" for i in range(2))
    with PrivateBroker(group) as broker:
        s = broker.settings
        workers = [start_worker(s, port=free_port(), wait=False) for _ in range(2)]
        wait_ready(workers)
        produce(s, imu_batches(first, 2, samples=100))
        wait_for(lambda: _stored(s, [first]), lambda n: n == 2, timeout=60)
        for w in workers:
            w.kill()  # no LeaveGroup: the group still lists them until the broker expires them
        started = time.monotonic()
        workers = [start_worker(s, port=free_port(), wait=False) for _ in range(2)]
        try:
            wait_ready(workers, wait_s=120)
            rejoined_s = time.monotonic() - started
            produce(s, imu_batches(later, 2, samples=100))
            wait_for(lambda: _stored(s, [later]), lambda n: n == 2, timeout=60)
        finally:
            for w in workers:
                w.stop()
    assert rejoined_s < 120
