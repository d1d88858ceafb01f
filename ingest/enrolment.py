"""Enrolling a device to a patient's episode (and revoking it), and clinic API keys. Shared by
the HTTP routes and the CLI.

An enrolment writes the credential (hashed) and a DeviceAssignment in one step: in the outbox mode
(default) the assignment goes into the outbox in the credential's transaction, and the relay
publishes it until the sink stored it; in the broker mode the transaction commits only after the
broker acknowledged the assignment. Either way a failure leaves neither. The token is returned
once and never stored.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import psycopg
from psycopg import AsyncConnection
from pydantic import BaseModel, ConfigDict, Field

from ingest import outbox
from ingest.outbox import OutboxRow, Relay
from ingest.problems import Problem, retry_after
from ingest.publisher import Outgoing, Publisher
from ingest.store import Store, episode_context
from ingest.tokens import (
    CLINIC_PREFIX,
    DEVICE_PREFIX,
    hash_pairing_code,
    hash_secret,
    new_pairing_code,
    new_token,
    normalise_pairing_code,
)
from rtm.contract import BodySite, DeviceAssignment, encode
from rtm.contract.base import AwareDatetime, Identifier
from rtm.contract.codec import content_digest
from rtm.topics import DEVICE_ASSIGNMENT


class EnrolmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patient_id: Identifier
    episode_id: Identifier
    device_id: Identifier
    model_id: Identifier = Field(description="a device model known to the system (device_models)")
    serial: Annotated[str, Field(max_length=128)] | None = None
    body_site: BodySite = BodySite.UNKNOWN
    valid_from: AwareDatetime | None = Field(
        default=None, description="when the device was handed over; data before it is rejected (default: now)"
    )


class Enrolment(BaseModel):
    credential_id: str
    token: str | None = Field(default=None, description="shown once: store it on the device")
    device_id: str
    patient_id: str
    episode_id: str
    body_site: BodySite
    valid_from: datetime


class ClinicKeyCreated(BaseModel):
    key_id: str
    clinic_id: str
    token: str


def _assignment(
    cred_id: str, device_id: str, patient_id: str, episode_id: str, site: BodySite, action: str, at: datetime
) -> DeviceAssignment:
    return DeviceAssignment.model_validate(
        {
            "patient_id": patient_id,
            "episode_id": episode_id,
            "device_id": device_id,
            "action": action,
            "at": at,
            "body_site": site,
            "provenance": {"adapter": "ingest-enrolment", "vendor": "rtm", "device_id": device_id},
        }
    )


@dataclass(frozen=True)
class Emitter:
    """How an enrolment's DeviceAssignment leaves: through the outbox (`outbox` True; `relay` is
    this process's relay, None from the CLI) or straight to the broker."""

    publisher: Publisher | None
    outbox: bool
    relay: Relay | None = None
    republish_after_s: float = 30.0

    async def in_transaction(
        self, conn: AsyncConnection[Any], event: DeviceAssignment, retry_s: int
    ) -> OutboxRow | None:
        value = encode(event)
        if self.outbox:
            row = OutboxRow(event.id, content_digest(value), DEVICE_ASSIGNMENT.name, event.key(), value)
            # Without a relay in this process (CLI), a gateway's retry path picks it up at once.
            await outbox.write(conn, [row], self.republish_after_s if self.relay is not None else 0.0)
            return row
        out = Outgoing(DEVICE_ASSIGNMENT.name, event.key(), value)
        if self.publisher is None or not all(await self.publisher.publish([out])):
            raise Problem(
                503,
                "broker-unavailable",
                "the assignment could not be published; nothing was changed",
                headers=retry_after(retry_s),
            )
        return None

    async def after_commit(self, row: OutboxRow | None) -> None:
        if row is None:
            return
        if self.relay is not None:
            self.relay.submit([row])
        elif self.publisher is not None:
            await self.publisher.publish([row.outgoing()])  # best effort: the outbox has it anyway


async def _insert_credential(conn: AsyncConnection[Any], values: tuple[Any, ...]) -> None:
    try:
        async with conn.transaction():  # a savepoint: the unique violation must not abort the caller
            await conn.execute(
                """insert into ingest_device_credentials (credential_id, device_id, patient_id, episode_id,
                       clinic_id, body_site, valid_from, secret_hash, created_by)
                   values (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                values,
            )
    except psycopg.errors.UniqueViolation:
        raise Problem(409, "conflict", "the device is already enrolled; revoke that enrolment first") from None


async def enrol(
    store: Store,
    emitter: Emitter,
    pepper: bytes,
    clinic_id: str,
    req: EnrolmentRequest,
    created_by: str,
    retry_s: int = 5,
) -> Enrolment:
    valid_from = req.valid_from or datetime.now(UTC)
    cred_id, secret, token = new_token(DEVICE_PREFIX)
    async with store.pool.connection() as conn, conn.transaction():
        ctx = await episode_context(conn, req.episode_id)
        if ctx is None or ctx[1] != clinic_id:
            # Another clinic's episode looks exactly like a missing one: no probing across clinics.
            raise Problem(404, "not-found", "no such episode in this clinic")
        if ctx[0] != req.patient_id:
            raise Problem(422, "invalid-request", "the episode belongs to another patient")
        cur = await conn.execute("select 1 from device_models where model_id = %s", (req.model_id,))
        if await cur.fetchone() is None:
            raise Problem(422, "invalid-request", f"unknown device model {req.model_id!r}")
        await conn.execute(
            "insert into devices (device_id, model_id, serial) values (%s, %s, %s) on conflict do nothing",
            (req.device_id, req.model_id, req.serial),
        )
        cur = await conn.execute(
            "select credential_id from ingest_device_credentials where device_id = %s and revoked_at is null",
            (req.device_id,),
        )
        live = await cur.fetchone()
        if live is not None:
            raise Problem(
                409,
                "conflict",
                "the device is already enrolled; revoke that enrolment first",
                extra={"credential_id": live[0]},
            )
        # A concurrent enrolment of the same device loses on the unique index of live credentials.
        await _insert_credential(
            conn,
            (
                cred_id,
                req.device_id,
                req.patient_id,
                req.episode_id,
                clinic_id,
                req.body_site.value,
                valid_from,
                hash_secret(pepper, secret),
                created_by,
            ),
        )
        row = await emitter.in_transaction(
            conn,
            _assignment(
                cred_id, req.device_id, req.patient_id, req.episode_id, req.body_site, "assign", valid_from
            ),
            retry_s,
        )
    await emitter.after_commit(row)
    return Enrolment(
        credential_id=cred_id,
        token=token,
        device_id=req.device_id,
        patient_id=req.patient_id,
        episode_id=req.episode_id,
        body_site=req.body_site,
        valid_from=valid_from,
    )


async def revoke(
    store: Store,
    emitter: Emitter,
    credential_id: str,
    clinic_id: str | None,
    reason: str | None,
    retry_s: int = 5,
) -> Enrolment:
    """Revoke a device credential (clinic_id None: an operator, any clinic). Idempotent."""
    async with store.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            """select device_id, patient_id, episode_id, clinic_id, body_site, valid_from, revoked_at
                 from ingest_device_credentials where credential_id = %s""",
            (credential_id,),
        )
        row = await cur.fetchone()
        if row is None or (clinic_id is not None and row[3] != clinic_id):
            raise Problem(404, "not-found", "no such enrolment in this clinic")
        device_id, patient_id, episode_id, _, site, valid_from, revoked_at = row
        result = Enrolment(
            credential_id=credential_id,
            device_id=device_id,
            patient_id=patient_id,
            episode_id=episode_id,
            body_site=BodySite(site),
            valid_from=valid_from,
        )
        if revoked_at is not None:
            return result
        now = datetime.now(UTC)
        # The writer role cannot update credentials; this function can only revoke a live one.
        cur = await conn.execute("select ingest_revoke_device_credential(%s, %s, %s)", (credential_id, reason, now))
        done = await cur.fetchone()
        if done is None or not done[0]:
            return result  # revoked meanwhile by another request: nothing more to announce
        pending = await emitter.in_transaction(
            conn,
            _assignment(credential_id, device_id, patient_id, episode_id, BodySite(site), "release", now),
            retry_s,
        )
    await emitter.after_commit(pending)
    return result


async def create_clinic_key(
    store: Store, pepper: bytes, clinic_id: str, label: str | None
) -> ClinicKeyCreated:
    key_id, secret, token = new_token(CLINIC_PREFIX)
    await store.create_clinic_key(key_id, clinic_id, hash_secret(pepper, secret), label)
    return ClinicKeyCreated(key_id=key_id, clinic_id=clinic_id, token=token)


class PairingCode(BaseModel):
    code: str = Field(description="shown once: the patient or the installer types it on the hub (rtm hub pair)")
    device_id: str
    clinic_id: str
    expires_at: datetime


class Pairing(BaseModel):
    """What a redeemed pairing code gives the hub: the device's credential, with a new secret."""

    token: str = Field(description="the device credential; the hub stores it and never shows it")
    credential_id: str
    device_id: str
    patient_id: str
    episode_id: str
    body_site: BodySite


_LIVE_CREDENTIAL = """select credential_id from ingest_device_credentials
                       where device_id = %s and clinic_id = %s and revoked_at is null"""
_VOID_EARLIER = """update ingest_pairing_codes set expires_at = %s
                    where device_id = %s and redeemed_at is null and expires_at > %s"""
_INSERT_CODE = """insert into ingest_pairing_codes (code_hash, device_id, clinic, created_by, expires_at)
                  values (%s, %s, %s, %s, %s)"""


def _code_rows(pepper: bytes, clinic_id: str, device_id: str, ttl_s: float, created_by: str | None
               ) -> tuple[PairingCode, tuple[Any, ...], tuple[Any, ...]]:
    if not 0 < ttl_s <= 7 * 86400:
        raise ValueError(f"a pairing code lives between 0 s and 7 days, not {ttl_s} s")
    now = datetime.now(UTC)
    code = new_pairing_code()
    canonical = normalise_pairing_code(code)
    assert canonical is not None
    expires = now + timedelta(seconds=ttl_s)
    return (PairingCode(code=code, device_id=device_id, clinic_id=clinic_id, expires_at=expires),
            (now, device_id, now),
            (hash_pairing_code(pepper, canonical), device_id, clinic_id, created_by, expires))


def _not_enrolled() -> Problem:
    return Problem(404, "not-found", "no live enrolment of this device in this clinic")


async def issue_pairing_code(store: Store, pepper: bytes, clinic_id: str, device_id: str, ttl_s: float,
                             created_by: str | None = None) -> PairingCode:
    """A short, single-use code that a hub redeems (POST /v1/pairing) for the credential of a device
    enrolled in this clinic. Earlier unused codes of the device stop working. Only its digest is stored."""
    async with store.pool.connection() as conn, conn.transaction():
        return await issue_pairing_code_on(conn, pepper, clinic_id, device_id, ttl_s, created_by)


async def issue_pairing_code_on(conn: AsyncConnection[Any], pepper: bytes, clinic_id: str, device_id: str,
                                ttl_s: float, created_by: str | None = None) -> PairingCode:
    """`issue_pairing_code` on a connection of the caller's (e.g. inside its transaction)."""
    result, void, insert = _code_rows(pepper, clinic_id, device_id, ttl_s, created_by)
    cur = await conn.execute(_LIVE_CREDENTIAL, (device_id, clinic_id))
    if await cur.fetchone() is None:
        raise _not_enrolled()
    await conn.execute(_VOID_EARLIER, void)
    await conn.execute(_INSERT_CODE, insert)
    return result


def issue_pairing_code_sync(conn: psycopg.Connection[Any], pepper: bytes, clinic_id: str, device_id: str,
                            ttl_s: float, created_by: str | None = None) -> PairingCode:
    """The same for synchronous callers (the clinic web app, the CLI), in one transaction."""
    result, void, insert = _code_rows(pepper, clinic_id, device_id, ttl_s, created_by)
    with conn.transaction():
        if conn.execute(_LIVE_CREDENTIAL, (device_id, clinic_id)).fetchone() is None:
            raise _not_enrolled()
        conn.execute(_VOID_EARLIER, void)
        conn.execute(_INSERT_CODE, insert)
    return result


class PairingRefused(Problem):
    """A code that was malformed, unknown, used or expired: it counts as a failed attempt."""


async def redeem_pairing_code(store: Store, pepper: bytes, text: str) -> Pairing:
    """Consume a pairing code and give the device's live credential a new secret; the token with
    it is returned once. The stored digest is found by its (keyed) hash, so the lookup's timing
    says nothing about the code; the match is confirmed in constant time."""
    canonical = normalise_pairing_code(text)
    if canonical is None:
        raise PairingRefused(422, "invalid-request", "a pairing code is 8 letters and digits, e.g. K7QM-3XPD")
    digest = hash_pairing_code(pepper, canonical)
    _, secret, _ = new_token(DEVICE_PREFIX)
    now = datetime.now(UTC)
    async with store.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "select code_hash, expires_at, redeemed_at from ingest_pairing_codes where code_hash = %s", (digest,))
        row = await cur.fetchone()
        if row is None or not hmac.compare_digest(bytes(row[0]), digest):
            raise PairingRefused(404, "pairing-code-unknown", "no such pairing code; check it or ask the clinic "
                                 "for a new one")
        if row[2] is not None:
            raise PairingRefused(410, "pairing-code-used", "this pairing code was already used; ask the clinic "
                                 "for a new one")
        if row[1] <= now:
            raise PairingRefused(410, "pairing-code-expired", "this pairing code has expired; ask the clinic "
                                 "for a new one")
        cur = await conn.execute("select * from ingest_redeem_pairing_code(%s, %s, %s)",
                                 (digest, hash_secret(pepper, secret), now))
        got = await cur.fetchone()
        if got is None:
            # Used by a concurrent request a moment ago, or the enrolment was revoked since.
            raise Problem(409, "conflict", "the code was just used, or the device's enrolment was revoked")
    cred_id, device_id, patient_id, episode_id, site = got
    return Pairing(token=f"{DEVICE_PREFIX}_{cred_id}.{secret}", credential_id=cred_id, device_id=device_id,
                   patient_id=patient_id, episode_id=episode_id, body_site=BodySite(site))


def new_request_id() -> str:
    return uuid.uuid4().hex
