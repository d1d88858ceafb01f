"""Home-hub routes: pairing by a short code (a clinic issues it, the hub redeems it for the device's
credential) and the health each hub reports with its device credential."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from ingest import enrolment
from ingest.metrics import (
    HUB_BATTERY,
    HUB_DISCONNECTED,
    HUB_EVICTIONS,
    HUB_REPORTS,
    HUB_SPOOL_DEPTH,
    HUB_SYNC_AGE,
    PAIRING,
)
from ingest.problems import Problem, retry_after
from ingest.state import Gateway, gateway
from rtm.contract.base import AwareDatetime, Identifier

router = APIRouter(tags=["home hub"])


class PairingCodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ttl_s: Annotated[float, Field(gt=0, le=7 * 86400)] | None = Field(
        default=None, description="lifetime of the code (default: the gateway's pairing_code_ttl_s)")


@router.post(
    "/v1/devices/{device_id}/pairing-code",
    status_code=201,
    response_model=enrolment.PairingCode,
    summary="Issue a single-use pairing code for an enrolled device (clinic API key); earlier codes stop working",
)
async def issue_code(request: Request, device_id: str, body: PairingCodeRequest | None = None
                     ) -> enrolment.PairingCode:
    gw = gateway(request)
    clinic = await gw.auth.clinic(request)
    ttl = body.ttl_s if body is not None and body.ttl_s is not None else gw.config.pairing_code_ttl_s
    return await enrolment.issue_pairing_code(gw.store, gw.pepper, clinic.clinic_id, device_id, ttl,
                                              created_by=f"clinic-key:{clinic.key_id}")


class PairingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, Field(min_length=1, max_length=32)]


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "-"


def _check_lockout(gw: Gateway, request: Request) -> None:
    if gw.pairing_failures is None:
        return
    wait = gw.pairing_failures.peek(_client(request))
    if wait > 0:
        PAIRING.labels("locked").inc()
        raise Problem(429, "pairing-locked", "too many failed pairing attempts from this address; wait and retry",
                      headers=retry_after(wait), extra={"retry_after_s": round(wait, 3)})


@router.post(
    "/v1/pairing",
    response_model=enrolment.Pairing,
    summary="Redeem a pairing code for the device's credential (no credential needed; single use, rate-limited)",
)
async def redeem(request: Request, body: PairingRequest, response: Response) -> enrolment.Pairing:
    gw = gateway(request)
    gw.limit_address(request)
    _check_lockout(gw, request)
    try:
        pairing = await enrolment.redeem_pairing_code(gw.store, gw.pepper, body.code)
    except enrolment.PairingRefused as exc:
        if gw.pairing_failures is not None:
            gw.pairing_failures.acquire(_client(request))
        PAIRING.labels(exc.code).inc()
        raise
    gw.auth.forget(pairing.credential_id)  # its secret changed
    PAIRING.labels("redeemed").inc()
    response.headers["Cache-Control"] = "no-store"
    return pairing


class HubHealthReport(BaseModel):
    """One device's view of the hub that serves it, sent with that device's credential."""

    model_config = ConfigDict(extra="forbid")
    hub_id: Identifier
    agent_version: Annotated[str, Field(pattern=r"^[A-Za-z0-9.+_-]{1,32}$")]
    at: AwareDatetime = Field(description="when the hub made the report")
    battery_pct: Annotated[int, Field(ge=0, le=100)] | None = None
    connected: bool
    last_sync: AwareDatetime | None = Field(default=None, description="the device's last accepted upload")
    spool_depth: Annotated[int, Field(ge=0)]
    spool_bytes: Annotated[int, Field(ge=0)]
    evictions: Annotated[int, Field(ge=0)] = Field(description="events the spool evicted, since it was created")
    rejected: Annotated[int, Field(ge=0)] = 0
    bad_frames: Annotated[int, Field(ge=0)] = 0
    clock_resets: Annotated[int, Field(ge=0)] = 0


_UPSERT = """
with prev as (select evictions from hub_health where device_id = %(device_id)s)
insert into hub_health (device_id, credential_id, patient_id, clinic_id, hub_id, agent_version, reported_at,
                        battery_pct, connected, last_sync, spool_depth, spool_bytes, evictions, rejected,
                        bad_frames, clock_resets)
values (%(device_id)s, %(credential_id)s, %(patient_id)s, %(clinic_id)s, %(hub_id)s, %(agent_version)s, %(at)s,
        %(battery_pct)s, %(connected)s, %(last_sync)s, %(spool_depth)s, %(spool_bytes)s, %(evictions)s,
        %(rejected)s, %(bad_frames)s, %(clock_resets)s)
on conflict (device_id) do update set
    credential_id = excluded.credential_id, patient_id = excluded.patient_id, clinic_id = excluded.clinic_id,
    hub_id = excluded.hub_id, agent_version = excluded.agent_version, reported_at = excluded.reported_at,
    received_at = now(), battery_pct = excluded.battery_pct, connected = excluded.connected,
    last_sync = excluded.last_sync, spool_depth = excluded.spool_depth, spool_bytes = excluded.spool_bytes,
    evictions = excluded.evictions, rejected = excluded.rejected, bad_frames = excluded.bad_frames,
    clock_resets = excluded.clock_resets
  where hub_health.reported_at <= excluded.reported_at
returning (select evictions from prev)
"""


@router.put("/v1/hub/health", status_code=204, summary="A hub reports its health for one device (device credential)")
async def report_health(request: Request, body: HubHealthReport) -> Response:
    gw = gateway(request)
    cred = await gw.auth.device(request)
    gw.rate_limit(cred.credential_id)
    now = datetime.now(UTC)
    ahead = timedelta(seconds=gw.config.hub_report_max_ahead_s)
    if body.at > now + ahead or (body.last_sync is not None and body.last_sync > now + ahead):
        raise Problem(422, "invalid-request", "the report's time lies in the future; check the hub's clock")
    async with gw.store.pool.connection() as conn:
        cur = await conn.execute(_UPSERT, {
            **body.model_dump(), "device_id": cred.device_id, "credential_id": cred.credential_id,
            "patient_id": cred.patient_id, "clinic_id": cred.clinic_id})
        row = await cur.fetchone()
    if row is not None:  # None: an older report than the stored one (a late retry); nothing changes
        previous = row[0]
        HUB_REPORTS.labels(body.agent_version).inc()
        # A spool that was recreated starts counting again: then all of its evictions are new.
        new = body.evictions - previous if previous is not None and body.evictions >= previous else body.evictions
        HUB_EVICTIONS.inc(new)
        HUB_SPOOL_DEPTH.observe(body.spool_depth)
        if body.battery_pct is not None:
            HUB_BATTERY.observe(body.battery_pct)
        HUB_SYNC_AGE.observe(max(0.0, (now - body.last_sync).total_seconds()) if body.last_sync else math.inf)
        if not body.connected:
            HUB_DISCONNECTED.inc()
    return Response(status_code=204)
