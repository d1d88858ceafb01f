"""The production jobs and the multiprocess gateway on the real local stack: `rtm provision
database` creates the roles from the secrets it is given and migrates, rotates passwords when run
again; `rtm provision topics` creates the code's topics with their partition counts; `rtm gateway
--workers 2` reports the requests of both processes on /metrics."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from psycopg import sql

from cli.provision import provision_database, provision_topics
from processors.supervisor import settings_env
from rtm.db.migrate import available
from rtm.settings import Settings
from rtm.stack import postgres
from rtm.stack.broker import free_port, partition_counts
from rtm.topics import group_topics

pytestmark = pytest.mark.integration


@pytest.fixture()
def production_db(stack_settings: Settings) -> Iterator[Settings]:
    """Production settings for a database and four roles of their own on the local cluster, with the
    local superuser standing in for the production one; all dropped afterwards."""
    tag = uuid.uuid4().hex[:8]
    admin_password = (stack_settings.secrets_dir / "pg_admin_password").read_text().strip()
    settings = stack_settings.model_copy(update={
        "environment": "production", "pg_database": f"rtm_prod_{tag}", "pg_admin_user": postgres.ADMIN_USER,
        "pg_admin_password": admin_password, "pg_owner_user": f"rtm_owner_{tag}",
        "pg_writer_user": f"rtm_writer_{tag}", "pg_reader_user": f"rtm_reader_{tag}", "pg_app_user": f"rtm_app_{tag}",
        **{f"pg_{role}_password": f"{role}-{uuid.uuid4().hex}" for role in ("owner", "writer", "reader", "app")},
        "broker_flavour": "kafka", "topic_replication": 1, "pg_host": stack_settings.pg_host,
    })
    try:
        yield settings
    finally:
        with postgres.admin_connect(stack_settings) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(settings.pg_database)))
            for role in ("app", "reader", "writer", "owner"):
                conn.execute(sql.SQL("drop role if exists {}").format(
                    sql.Identifier(getattr(settings, f"pg_{role}_user"))))


def test_provision_database_creates_roles_from_secrets_migrates_and_rotates(production_db: Settings) -> None:
    applied = provision_database(production_db)
    assert applied == [f"{m.version:04d}_{m.name}" for m in available()]
    with psycopg.connect(production_db.dsn("writer")) as conn:
        (versions,) = conn.execute("select count(*) from schema_migrations").fetchone() or (0,)
        assert versions == len(applied)
        (owner,) = conn.execute("select pg_get_userbyid(datdba) from pg_database where datname = current_database()"
                                ).fetchone() or ("",)
        assert owner == production_db.pg_owner_user
    with psycopg.connect(production_db.dsn("reader")) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("insert into clinics (clinic_id, name) values ('x', 'x')")
    rotated = production_db.model_copy(update={"pg_writer_password": "rotated-" + uuid.uuid4().hex})
    assert provision_database(rotated) == []  # idempotent: nothing left to migrate
    with psycopg.connect(rotated.dsn("writer")):
        pass
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(production_db.dsn("writer"), connect_timeout=5)


def test_provision_topics_creates_the_codes_topics_with_their_partitions(stack_settings: Settings) -> None:
    settings = stack_settings.model_copy(update={
        "environment": "production", "broker_flavour": "kafka", "topic_replication": 1,
        "pg_host": stack_settings.pg_host, "kafka_bootstrap": stack_settings.kafka_bootstrap,
        "app_id": f"rtm-prov-{uuid.uuid4().hex[:6]}"})
    wanted = group_topics(settings.app_id)
    provision_topics(settings)
    assert provision_topics(settings) == []  # all present the second time

    async def counts() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            return await partition_counts(admin, [t.name for t in wanted])
        finally:
            await admin.close()

    assert asyncio.run(counts()) == {t.name: t.partitions for t in wanted}


def test_gateway_with_two_processes_reports_both_on_metrics(db_settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    env = settings_env(db_settings) | {
        "RTM_GATEWAY_PORT": str(port), "RTM_GATEWAY_PEPPER": "p" * 40, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "RTM_GATEWAY_IP_BURST": "100000"}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "rtm"), "gateway", "--workers", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "gateway did not become ready"
            time.sleep(0.5)
        # Keep asking until both processes have counted requests: under load the second process
        # may take a while to start, which is slowness, not the failure this test looks for.
        n, writers = 0, set[str]()
        deadline = time.monotonic() + 90
        while len(writers) < 2 and time.monotonic() < deadline:
            for _ in range(20):  # a new connection each time, so that either process may accept it
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"Connection": "close"}).status_code == 200
            n += 20
            writers = {p.name.rsplit("_", 1)[-1] for p in metrics_dir.glob("counter_*.db")}
        assert len(writers) >= 2, writers  # both processes counted requests
        for _ in range(4):  # whichever process answers the scrape reports the sum over both
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Connection": "close"}).text
            m = re.search(r'rtm_ingest_requests_total\{route="/healthz",status="200"\} ([0-9.e+]+)', text)
            assert m and float(m.group(1)) == n, m
    finally:
        proc.terminate()
        proc.wait(timeout=30)
