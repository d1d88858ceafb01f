"""Clinic-side routes (clinic API key): enrol a device for a patient's episode, revoke it, link a
vendor-cloud account to an enrolled device."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.responses import Response

from ingest import enrolment
from ingest.problems import Problem
from ingest.state import gateway

router = APIRouter(tags=["enrolment"])


@router.post(
    "/v1/enrolments",
    status_code=201,
    response_model=enrolment.Enrolment,
    summary="Enrol a device for a patient's episode; the device token is returned once",
)
async def enrol_device(request: Request, body: enrolment.EnrolmentRequest) -> enrolment.Enrolment:
    gw = gateway(request)
    clinic = await gw.auth.clinic(request)
    return await enrolment.enrol(
        gw.store,
        gw.emitter(),
        gw.pepper,
        clinic.clinic_id,
        body,
        created_by=f"clinic-key:{clinic.key_id}",
        retry_s=gw.config.retry_after_s,
    )


class Revocation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(max_length=200)] | None = None


@router.delete("/v1/enrolments/{credential_id}", status_code=204, summary="Revoke a device's enrolment")
async def revoke_device(request: Request, credential_id: str) -> Response:
    gw = gateway(request)
    clinic = await gw.auth.clinic(request)
    await enrolment.revoke(
        gw.store, gw.emitter(), credential_id, clinic.clinic_id, None, gw.config.retry_after_s
    )
    gw.auth.forget(credential_id)
    return Response(status_code=204)


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {name!r}") from exc
    return name


class PolarLinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credential_id: Annotated[str, Field(min_length=1, max_length=64)]
    polar_user_id: Annotated[int, Field(ge=0)]
    access_token: Annotated[str, Field(min_length=1, max_length=2048)]
    tz: Annotated[str, AfterValidator(_zone)] = Field(
        description="IANA zone of the user's Polar device clock"
    )


@router.put(
    "/v1/vendor-links/polar",
    status_code=204,
    summary="Link a Polar AccessLink user (after OAuth) to an enrolled device",
)
async def link_polar(request: Request, body: PolarLinkRequest) -> Response:
    gw = gateway(request)
    clinic = await gw.auth.clinic(request)
    cred = await gw.store.device_credential(body.credential_id)
    if cred is None or cred.clinic_id != clinic.clinic_id:
        raise Problem(404, "not-found", "no such enrolment in this clinic")
    if cred.revoked_at is not None:
        raise Problem(409, "conflict", "that enrolment was revoked")
    if gw.vendors is None:
        raise Problem(404, "not-found", "vendor connections are not configured")
    # Stored encrypted as a vendor connection (the OAuth flow of /v1/vendor-connections does the same).
    await gw.vendors.connections.upsert(
        "polar", str(body.polar_user_id), body.credential_id, body.tz,
        {"access_token": body.access_token, "token_type": "bearer"},
    )
    return Response(status_code=204)
