"""Fixtures for the gateway tests: the app on the real broker and database (the session's stack),
a care context (clinic, patient, episode, device model), a clinic API key and enrolled devices."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi.testclient import TestClient
from pydantic import SecretStr

from device_adapters.cloud.crypto import new_key_spec
from device_adapters.cloud.fakes.polar import PolarFake
from device_adapters.cloud.fakes.server import serve
from device_adapters.cloud.settings import VendorSettings
from ingest.app import create_app
from ingest.settings import GatewaySettings
from ingest.tokens import CLINIC_PREFIX, hash_secret, new_token
from rtm.contract import ImuBatch, encode
from rtm.settings import Settings

PEPPER = "test-pepper-not-a-secret"
POLAR_SECRET = b"polar-webhook-test-secret"
TOKEN_KEYS = new_key_spec("t1")


def gateway_config(**overrides: Any) -> GatewaySettings:
    base: dict[str, Any] = {
        "pepper": SecretStr(PEPPER),
        "rate_per_s": 1000.0,
        "burst": 100_000,
        "publish_timeout_s": 3.0,
        "retry_after_s": 2,
        "auth_cache_ttl_s": 0.0,
        "polar_webhook_secret": SecretStr(POLAR_SECRET.decode()),
        "max_body_bytes": 4 << 20,
        "max_decoded_bytes": 8 << 20,
        "max_events_per_request": 500,
        # Tests send many bad tokens and probe requests from one address: limits of their own.
        "auth_failure_burst": 100_000,
        "ip_burst": 100_000,
        "clinic_burst": 100_000,
        # No worker stores the gateway tests' events until the pipeline tests start one on the same
        # topics; republishing them then would change what those tests read. The outbox tests that
        # need the retry path set their own, short interval.
        "outbox_republish_after_s": 3600.0,
    }
    base.update(overrides)
    return GatewaySettings(**base)


@dataclass(frozen=True)
class Care:
    clinic_id: str
    patient_id: str
    episode_id: str
    model_id: str
    clinic_token: str


def make_care(db_settings: Settings, suffix: str | None = None) -> Care:
    s = suffix or uuid.uuid4().hex[:8]
    care = Care(f"clinic-{s}", f"pat-{s}", f"ep-{s}", "test-imu-v1", "")
    key_id, secret, token = new_token(CLINIC_PREFIX)
    with psycopg.connect(db_settings.dsn("owner"), autocommit=True) as conn:
        conn.execute("insert into clinics (clinic_id, name) values (%s, 'Test clinic')", (care.clinic_id,))
        conn.execute(
            "insert into patients (patient_id, clinic_id) values (%s, %s)", (care.patient_id, care.clinic_id)
        )
        conn.execute(
            "insert into episodes (episode_id, patient_id, clinic_id, discipline, start_date) "
            "values (%s, %s, %s, 'PT', current_date - 30)",
            (care.episode_id, care.patient_id, care.clinic_id),
        )
        conn.execute(
            "insert into device_models (model_id, vendor, name) values (%s, 'test', 'Test IMU') "
            "on conflict do nothing",
            (care.model_id,),
        )
        conn.execute(
            "insert into ingest_clinic_keys (key_id, clinic_id, secret_hash) values (%s, %s, %s)",
            (key_id, care.clinic_id, hash_secret(PEPPER.encode(), secret)),
        )
    return Care(care.clinic_id, care.patient_id, care.episode_id, care.model_id, token)


@dataclass(frozen=True)
class Device:
    device_id: str
    credential_id: str
    token: str
    care: Care

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def enrol(client: TestClient, care: Care, valid_from: datetime | None = None) -> Device:
    device_id = f"dev-{uuid.uuid4().hex[:10]}"
    body: dict[str, Any] = {
        "patient_id": care.patient_id,
        "episode_id": care.episode_id,
        "device_id": device_id,
        "model_id": care.model_id,
        "body_site": "thigh_left",
    }
    body["valid_from"] = (valid_from or datetime.now(UTC) - timedelta(days=10)).isoformat()
    r = client.post("/v1/enrolments", json=body, headers={"Authorization": f"Bearer {care.clinic_token}"})
    assert r.status_code == 201, r.text
    return Device(device_id, r.json()["credential_id"], r.json()["token"], care)


def imu_batch(
    dev: Device,
    t0: datetime | None = None,
    n: int = 200,
    rate: float = 100.0,
    stream: str | None = None,
    **over: Any,
) -> ImuBatch:
    rng = np.random.default_rng(n)
    fields: dict[str, Any] = {
        "patient_id": dev.care.patient_id,
        "provenance": {"adapter": "test-hub", "vendor": "test", "device_id": dev.device_id},
        "stream_id": stream or f"s-{uuid.uuid4().hex[:8]}",
        "body_site": "thigh_left",
        "t0": t0 or datetime.now(UTC) - timedelta(hours=1),
        "sample_rate_hz": rate,
        "acc": (rng.normal(0, 1, (n, 3)) + np.array([0.0, 0.0, 9.81])).astype(np.float32),
        "gyr": rng.normal(0, 0.1, (n, 3)).astype(np.float32),
    }
    fields.update(over)
    return ImuBatch.model_validate(fields)


def imu_json(batch: ImuBatch) -> dict[str, Any]:
    body = batch.model_dump(mode="json")
    body["kind"] = batch.kind
    return body


def frames(*batches: ImuBatch) -> bytes:
    return b"".join(encode(b) for b in batches)


@pytest.fixture(scope="session")
def polar_fake() -> Iterator[PolarFake]:
    """The AccessLink fake over real HTTP on a free local port."""
    fake = PolarFake(webhook_secret=POLAR_SECRET)
    served = serve(fake.app())
    fake.base_url = served.url
    yield fake
    served.stop()


def vendor_config(polar: PolarFake, **overrides: Any) -> VendorSettings:
    base: dict[str, Any] = {
        "token_keys": SecretStr(TOKEN_KEYS),
        "redirect_base": "http://testserver",
        "polar_client_id": polar.client_id,
        "polar_client_secret": SecretStr(polar.client_secret),
        "polar_authorize_url": f"{polar.base_url}/oauth2/authorization",
        "polar_token_url": f"{polar.base_url}/v2/oauth2/token",
        "syncer_poll_s": 0.5,
        "notification_backoff_s": 0.2,
    }
    base.update(overrides)
    return VendorSettings(**base)


def build_client(
    settings: Settings, polar: PolarFake, vendor: dict[str, Any] | None = None, **overrides: Any
) -> TestClient:
    app = create_app(
        settings,
        gateway_config(polar_api_base=polar.base_url, **overrides),
        polar_http=httpx.AsyncClient(),
        vendor_config=vendor_config(polar, **(vendor or {})),
    )
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="session")
def client(db_settings: Settings, polar_fake: PolarFake) -> Iterator[TestClient]:
    with build_client(db_settings, polar_fake) as c:
        yield c


@pytest.fixture(scope="session")
def care(db_settings: Settings) -> Care:
    return make_care(db_settings)


@pytest.fixture()
def device(client: TestClient, care: Care) -> Device:
    return enrol(client, care)


def read_topic(settings: Settings, topic: str, key: bytes, timeout_s: float = 10.0) -> list[bytes]:
    """Every value with this key in the topic, read from the start up to the high-water marks (taken
    from fetch responses: the development broker's ListOffsets is unreliable)."""

    async def run() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        try:
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
            if not parts:
                await consumer.client.force_metadata_update()
                parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            out: list[bytes] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            idle = 0
            while loop.time() < deadline:
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    out.extend(r.value for r in records if r.key == key and r.value is not None)
                caught_up = True
                for tp in parts:
                    high = consumer.highwater(tp)
                    if high is None or await consumer.position(tp) < high:
                        caught_up = False
                idle = idle + 1 if not batch else 0
                if caught_up and idle >= 1:
                    break
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())


def dedup_rows(db_settings: Settings, ids: list[uuid.UUID]) -> int:
    with psycopg.connect(db_settings.dsn("writer"), autocommit=True) as conn:
        row = conn.execute(
            "select count(*) from ingest_accepted_events where event_id = any(%s)", (ids,)
        ).fetchone()
        return int(row[0]) if row else 0


Factory = Callable[..., Device]
