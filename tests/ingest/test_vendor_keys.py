"""Vendor tokens in the database: key rotation and re-encryption, and a token that expires
without a refresh token (AccessLink issues none) marking the connection for re-authorisation."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from psycopg_pool import AsyncConnectionPool

from device_adapters.cloud.connections import Connections
from device_adapters.cloud.crypto import TokenCipher, TokenKeyError, new_key_spec
from device_adapters.cloud.fakes.polar import PolarFake
from rtm.settings import Settings
from tests.ingest.conftest import TOKEN_KEYS, Care, enrol
from tests.ingest.test_vendor_polar import connect
from tests.ingest.vendor_helpers import connection, wait_queue_empty

pytestmark = pytest.mark.integration


def test_rotation_reencrypts_every_token(client: TestClient, care: Care, db_settings: Settings) -> None:
    dev = enrol(client, care)
    k1, k2 = new_key_spec("rot1"), new_key_spec("rot2")

    async def run() -> None:
        async with AsyncConnectionPool(db_settings.dsn("writer"), min_size=1, max_size=2, open=False) as pool:
            old = Connections(pool, TokenCipher.from_spec(k1))
            await old.upsert("polar", "rot-user", dev.credential_id, "UTC", {"access_token": "secret-abc"})
            # The session's key too: other tests' connections (every vendor's) are in the table.
            rotated = Connections(pool, TokenCipher.from_spec(f"{k2},{k1},{TOKEN_KEYS}"))
            got = await rotated.get("polar", "rot-user")
            assert got is not None and got.token["access_token"] == "secret-abc"  # old key still opens it
            assert await rotated.reencrypt_all() >= 1
            assert await rotated.reencrypt_all() == 0  # nothing left under an old key
            only_new = Connections(pool, TokenCipher.from_spec(k2))
            got = await only_new.get("polar", "rot-user")
            assert got is not None and got.token["access_token"] == "secret-abc"
            with pytest.raises(TokenKeyError):
                await Connections(pool, TokenCipher.from_spec(k1)).get("polar", "rot-user")

    asyncio.run(run())
    assert connection(db_settings, "polar", "rot-user")["token_key_id"] == "rot2"


def test_expiring_token_without_refresh_token_needs_reauthorization(
    client: TestClient, polar_fake: PolarFake, care: Care, db_settings: Settings
) -> None:
    dev = enrol(client, care, valid_from=datetime.now(UTC) - timedelta(days=2))
    user = 5010
    polar_fake.token_lifetime_s = 60  # inside the refresh margin: the syncer must refresh first
    try:
        connect(client, polar_fake, dev, user, "UTC")
    finally:
        polar_fake.token_lifetime_s = 315_360_000
    calls = polar_fake.calls
    wait_queue_empty(db_settings, "polar", str(user))
    row = connection(db_settings, "polar", str(user))
    assert row["status"] == "reauthorization_required" and "no refresh token" in row["last_error"]
    assert row["token_expires_at"] < datetime.now(UTC) + timedelta(seconds=120)
    time.sleep(0.2)
    assert polar_fake.calls == calls  # no data request with a token about to die
