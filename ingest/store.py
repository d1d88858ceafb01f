"""The gateway's database access (writer role, async pool): credentials, clinic keys, the dedup
record of acknowledged events, vendor links. Nothing else in the gateway writes SQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from rtm.settings import Settings


@dataclass(frozen=True)
class DeviceCredential:
    credential_id: str
    secret_hash: bytes
    device_id: str
    patient_id: str
    episode_id: str
    clinic_id: str
    body_site: str
    valid_from: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class ClinicKey:
    key_id: str
    clinic_id: str
    secret_hash: bytes
    revoked_at: datetime | None


@dataclass(frozen=True)
class AcceptedRow:
    event_id: uuid.UUID
    digest: bytes
    kind: str
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class VendorLink:
    vendor: str
    vendor_user_id: str
    credential_id: str
    tz: str
    access_token: str


class Store:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    @classmethod
    async def open(
        cls,
        settings: Settings,
        max_size: int = 8,
        acquire_timeout_s: float = 30.0,
        role: Literal["writer", "owner"] = "writer",
    ) -> Store:
        """The gateway uses the writer role; operators' clinic-key commands the owner role (the
        writer cannot change credential tables, see migration 0411)."""
        # A short acquire timeout turns a database that is down (or saturated) into a prompt 503
        # instead of requests that hang; connect_timeout bounds each reconnection attempt.
        pool = AsyncConnectionPool(
            settings.dsn(role),
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=acquire_timeout_s,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(acquire_timeout_s))},
        )
        await pool.open(wait=True, timeout=15)
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def ping(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("select 1")

    # --- credentials ------------------------------------------------------------------------
    async def device_credential(self, credential_id: str) -> DeviceCredential | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """select credential_id, secret_hash, device_id, patient_id, episode_id, clinic_id, body_site,
                          valid_from, revoked_at
                     from ingest_device_credentials where credential_id = %s""",
                (credential_id,),
            )
            row = await cur.fetchone()
        return None if row is None else DeviceCredential(*row)

    async def clinic_key(self, key_id: str) -> ClinicKey | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "select key_id, clinic_id, secret_hash, revoked_at from ingest_clinic_keys where key_id = %s",
                (key_id,),
            )
            row = await cur.fetchone()
        return None if row is None else ClinicKey(*row)

    async def create_clinic_key(
        self, key_id: str, clinic_id: str, secret_hash: bytes, label: str | None
    ) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "insert into ingest_clinic_keys (key_id, clinic_id, secret_hash, label) "
                "values (%s, %s, %s, %s)",
                (key_id, clinic_id, secret_hash, label),
            )

    async def revoke_clinic_key(self, key_id: str) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "update ingest_clinic_keys set revoked_at = now() where key_id = %s and revoked_at is null",
                (key_id,),
            )
            return cur.rowcount == 1

    async def ensure_clinic(self, clinic_id: str, name: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "insert into clinics (clinic_id, name) values (%s, %s) on conflict do nothing",
                (clinic_id, name),
            )

    async def list_credentials(self, clinic_id: str | None = None) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                """select credential_id, device_id, patient_id, episode_id, clinic_id, valid_from, created_at,
                          revoked_at
                     from ingest_device_credentials
                    where %(clinic)s::text is null or clinic_id = %(clinic)s
                    order by created_at""",
                {"clinic": clinic_id},
            )
            return await cur.fetchall()

    # --- the dedup record -------------------------------------------------------------------
    async def accepted(self, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, AcceptedRow]:
        if not event_ids:
            return {}
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """select event_id, digest, kind, start_time, end_time
                     from ingest_accepted_events where event_id = any(%s)""",
                (list(event_ids),),
            )
            return {r[0]: AcceptedRow(*r) for r in await cur.fetchall()}

    async def record_accepted(self, rows: Sequence[AcceptedRow]) -> None:
        """Written only after the broker acknowledged these events (see docs/ingest.md)."""
        if not rows:
            return
        async with self.pool.connection() as conn:
            await conn.execute(
                """insert into ingest_accepted_events (event_id, digest, kind, start_time, end_time)
                   select * from unnest(%s::uuid[], %s::bytea[], %s::text[],
                                        %s::timestamptz[], %s::timestamptz[])
                   on conflict (event_id) do update
                      set digest = excluded.digest, accepted_at = now(),
                          start_time = coalesce(excluded.start_time, ingest_accepted_events.start_time),
                          end_time = coalesce(excluded.end_time, ingest_accepted_events.end_time)""",
                (
                    [r.event_id for r in rows],
                    [r.digest for r in rows],
                    [r.kind for r in rows],
                    [r.start for r in rows],
                    [r.end for r in rows],
                ),
            )

    # --- vendor links -----------------------------------------------------------------------
    async def vendor_link(self, vendor: str, vendor_user_id: str) -> VendorLink | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """select vendor, vendor_user_id, credential_id, tz, access_token
                     from ingest_vendor_links where vendor = %s and vendor_user_id = %s""",
                (vendor, vendor_user_id),
            )
            row = await cur.fetchone()
        return None if row is None else VendorLink(*row)

    async def upsert_vendor_link(self, link: VendorLink) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                """insert into ingest_vendor_links (vendor, vendor_user_id, credential_id, tz, access_token)
                   values (%s, %s, %s, %s, %s)
                   on conflict (vendor, vendor_user_id) do update
                      set credential_id = excluded.credential_id, tz = excluded.tz,
                          access_token = excluded.access_token""",
                (link.vendor, link.vendor_user_id, link.credential_id, link.tz, link.access_token),
            )

    # --- enrolment (one transaction per call; see ingest.enrolment) -----------------------
    def transaction_connection(self) -> Any:
        return self.pool.connection()


async def episode_context(conn: AsyncConnection[Any], episode_id: str) -> tuple[str, str] | None:
    """(patient_id, clinic_id) of an episode."""
    cur = await conn.execute(
        "select patient_id, clinic_id from episodes where episode_id = %s", (episode_id,)
    )
    row = await cur.fetchone()
    return None if row is None else (str(row[0]), str(row[1]))
