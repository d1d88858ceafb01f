"""Vendor connections in the database (migration 0720): tokens encrypted with `TokenCipher`
(the row's vendor and user id are the associated data), sync health, OAuth states and the
webhook notification queue with its dedup records."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from device_adapters.cloud.crypto import TokenCipher

STATUSES = ("active", "reauthorization_required", "revoked", "disconnected")


def _aad(vendor: str, vendor_user_id: str) -> bytes:
    return f"vendor-token:{vendor}:{vendor_user_id}".encode()


@dataclass(frozen=True)
class Connection:
    vendor: str
    vendor_user_id: str
    credential_id: str
    tz: str
    status: str
    token: dict[str, Any]
    token_expires_at: datetime | None
    synced_through: dt.date | None
    not_before: datetime | None
    last_success_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class Notification:
    vendor: str
    notification_id: str
    vendor_user_id: str | None
    payload: dict[str, Any]
    attempts: int


def _expiry(token: dict[str, Any]) -> datetime | None:
    exp = token.get("expires_at")
    return None if exp is None else datetime.fromtimestamp(float(exp), UTC)


class Connections:
    def __init__(self, pool: AsyncConnectionPool, cipher: TokenCipher) -> None:
        self.pool = pool
        self.cipher = cipher

    def _seal(self, vendor: str, user: str, token: dict[str, Any]) -> tuple[str, bytes]:
        return self.cipher.encrypt(orjson.dumps(token), _aad(vendor, user))

    async def upsert(self, vendor: str, user: str, credential_id: str, tz: str, token: dict[str, Any]) -> None:
        """A (re)connected account: active again with the new token; sync progress is kept when the
        same device reconnects, reset when the account moves to another device."""
        kid, blob = self._seal(vendor, user, token)
        async with self.pool.connection() as conn:
            await conn.execute(
                """insert into vendor_connections
                       (vendor, vendor_user_id, credential_id, tz, token_key_id, token_ciphertext, token_expires_at)
                   values (%s, %s, %s, %s, %s, %s, %s)
                   on conflict (vendor, vendor_user_id) do update
                      set synced_through = case when vendor_connections.credential_id = excluded.credential_id
                                                then vendor_connections.synced_through end,
                          credential_id = excluded.credential_id, tz = excluded.tz, status = 'active',
                          token_key_id = excluded.token_key_id, token_ciphertext = excluded.token_ciphertext,
                          token_expires_at = excluded.token_expires_at, last_error = null,
                          not_before = null, updated_at = now()""",
                (vendor, user, credential_id, tz, kid, blob, _expiry(token)),
            )

    async def get(self, vendor: str, user: str) -> Connection | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """select vendor, vendor_user_id, credential_id, tz, status, token_key_id, token_ciphertext,
                          token_expires_at, synced_through, not_before, last_success_at, last_error
                     from vendor_connections where vendor = %s and vendor_user_id = %s""",
                (vendor, user),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        token = orjson.loads(self.cipher.decrypt(row[5], bytes(row[6]), _aad(vendor, user)))
        return Connection(row[0], row[1], row[2], row[3], row[4], token, row[7], row[8], row[9], row[10], row[11])

    async def save_token(self, vendor: str, user: str, token: dict[str, Any]) -> None:
        kid, blob = self._seal(vendor, user, token)
        async with self.pool.connection() as conn:
            await conn.execute(
                """update vendor_connections set token_key_id = %s, token_ciphertext = %s,
                          token_expires_at = %s, updated_at = now()
                    where vendor = %s and vendor_user_id = %s""",
                (kid, blob, _expiry(token), vendor, user),
            )

    async def record(
        self,
        vendor: str,
        user: str,
        *,
        status: str | None = None,
        synced_through: dt.date | None = None,
        success: bool = False,
        error: str | None = None,
        not_before: datetime | None = None,
    ) -> None:
        """Sync health: progress only moves forward; an error is kept until the next success."""
        async with self.pool.connection() as conn:
            await conn.execute(
                """update vendor_connections
                      set status = coalesce(%(status)s, status),
                          synced_through = greatest(synced_through, %(through)s),
                          last_success_at = case when %(success)s then now() else last_success_at end,
                          last_error = case when %(success)s then null else coalesce(%(error)s, last_error) end,
                          last_error_at = case when %(error)s is not null then now() else last_error_at end,
                          not_before = %(not_before)s, updated_at = now()
                    where vendor = %(vendor)s and vendor_user_id = %(user)s""",
                {"status": status, "through": synced_through, "success": success, "error": error,
                 "not_before": not_before, "vendor": vendor, "user": user},
            )

    async def health(self, clinic_id: str, patient_id: str | None = None) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """select v.vendor, v.vendor_user_id, d.patient_id, v.credential_id, v.status, v.tz,
                          v.synced_through, v.last_success_at, v.last_error_at, v.last_error,
                          v.token_expires_at, v.not_before
                     from vendor_connections v join ingest_device_credentials d using (credential_id)
                    where d.clinic_id = %s and (%s::text is null or d.patient_id = %s)
                    order by d.patient_id, v.vendor""",
                (clinic_id, patient_id, patient_id),
            )
            names = [c.name for c in cur.description or []]
            return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]

    async def reencrypt_all(self) -> int:
        """Every token under the active key (after a key rotation); returns how many rows moved."""
        moved = 0
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "select vendor, vendor_user_id, token_key_id, token_ciphertext from vendor_connections "
                "where token_key_id <> %s",
                (self.cipher.active_key_id,),
            )
            for vendor, user, kid, blob in await cur.fetchall():
                plain = self.cipher.decrypt(kid, bytes(blob), _aad(vendor, user))
                nkid, nblob = self.cipher.encrypt(plain, _aad(vendor, user))
                await conn.execute(
                    "update vendor_connections set token_key_id = %s, token_ciphertext = %s "
                    "where vendor = %s and vendor_user_id = %s and token_key_id = %s",
                    (nkid, nblob, vendor, user, kid),
                )
                moved += 1
        return moved

    # --- OAuth states ---------------------------------------------------------------------------
    async def new_state(self, state: str, vendor: str, credential_id: str, tz: str, verifier: str) -> None:
        kid, blob = self.cipher.encrypt(verifier.encode(), _aad(vendor, "state:" + state))
        async with self.pool.connection() as conn:
            await conn.execute(
                "insert into vendor_oauth_states (state, vendor, credential_id, tz, key_id, verifier_ct) "
                "values (%s, %s, %s, %s, %s, %s)",
                (state, vendor, credential_id, tz, kid, blob),
            )

    async def take_state(self, vendor: str, state: str, ttl_s: float) -> tuple[str, str, str] | None:
        """(credential_id, tz, verifier) of an unused, unexpired state; marks it used (single use)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """update vendor_oauth_states set used_at = now()
                    where state = %s and vendor = %s and used_at is null and created_at > %s
                returning credential_id, tz, key_id, verifier_ct""",
                (state, vendor, datetime.now(UTC) - timedelta(seconds=ttl_s)),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        verifier = self.cipher.decrypt(row[2], bytes(row[3]), _aad(vendor, "state:" + state)).decode()
        return row[0], row[1], verifier

    # --- webhook notifications ------------------------------------------------------------------
    async def enqueue(self, vendor: str, notification_id: str, user: str | None, payload: dict[str, Any]) -> bool:
        """False when this notification id was seen before (a replay or a vendor's redelivery)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """insert into vendor_notifications (vendor, notification_id, vendor_user_id, payload)
                   values (%s, %s, %s, %s) on conflict do nothing returning 1""",
                (vendor, notification_id, user, Jsonb(payload)),
            )
            return await cur.fetchone() is not None

    async def claim(self, limit: int, lease_s: float, vendors: list[str] | None = None) -> list[Notification]:
        """Due notifications, leased: a gateway that dies while working on one leaves it due again.
        `vendors`: only those (a gateway claims only what it has an integration for)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """update vendor_notifications n
                      set attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => %s)
                     from (select vendor, notification_id from vendor_notifications
                            where status = 'pending' and next_attempt_at <= now()
                              and (%s::text[] is null or vendor = any(%s::text[]))
                            order by next_attempt_at limit %s for update skip locked) due
                    where n.vendor = due.vendor and n.notification_id = due.notification_id
                returning n.vendor, n.notification_id, n.vendor_user_id, n.payload, n.attempts""",
                (lease_s, vendors, vendors, limit),
            )
            return [Notification(*r) for r in await cur.fetchall()]

    async def finish(self, n: Notification, status: str, error: str | None = None,
                     retry_at: datetime | None = None) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                """update vendor_notifications set status = %s, last_error = %s,
                          next_attempt_at = coalesce(%s, next_attempt_at)
                    where vendor = %s and notification_id = %s""",
                (status, error, retry_at, n.vendor, n.notification_id),
            )

    async def notification_status(self, vendor: str, notification_id: str) -> str | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "select status from vendor_notifications where vendor = %s and notification_id = %s",
                (vendor, notification_id),
            )
            row = await cur.fetchone()
        return None if row is None else str(row[0])
