"""Vendor-cloud connections: the OAuth authorization-code flow per patient device, the clinic's
view of each connection's sync health, and disconnecting.

1. The clinic app asks for an authorization link for an enrolled device
   (`POST /v1/vendor-connections/{vendor}/authorize`) and shows it or sends it to the patient.
2. The patient consents at the vendor, whose redirect brings the browser to
   `GET /v1/oauth/{vendor}/callback?code=...&state=...`: the single-use state (24 h) names the
   device; the code is exchanged (with the PKCE verifier where the vendor supports it), the
   vendor account registered, the token stored encrypted, and a backfill queued.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.responses import Response

from device_adapters.cloud import garmin, oauth, polar, withings
from device_adapters.cloud.connections import Notification
from device_adapters.cloud.errors import RateLimited, VendorRejected, VendorUnavailable
from ingest.problems import Problem, retry_after
from ingest.routes.enrolment import _zone
from ingest.state import gateway
from ingest.vendor_sync import VendorSyncer

router = APIRouter(tags=["vendor connections"])


def _polar_day(n: Notification) -> dt.date | None:
    raw = n.payload.get("date")
    return dt.date.fromisoformat(raw) if isinstance(raw, str) else None


# The day a queued notification names, per vendor (None: a plain backfill).
DAY_OF: dict[str, Callable[[Notification], dt.date | None]] = {polar.VENDOR: _polar_day}
DAY_OF |= {withings.VENDOR: withings.notified_day, garmin.VENDOR: garmin.notified_day}


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _syncer(request: Request, vendor: str) -> VendorSyncer:
    syncer = gateway(request).vendors
    if syncer is None or vendor not in syncer.adapters:
        raise Problem(404, "not-found", f"no vendor integration {vendor!r}")
    return syncer


class AuthorizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credential_id: Annotated[str, Field(min_length=1, max_length=64)]
    tz: Annotated[str, AfterValidator(_zone)] = Field(description="IANA zone of the patient (the vendor's clock)")


@router.post("/v1/vendor-connections/{vendor}/authorize", status_code=201,
             summary="An authorization link for a patient's enrolled device")
async def authorize(request: Request, vendor: str, body: AuthorizeRequest) -> Response:
    gw = gateway(request)
    clinic = await gw.auth.clinic(request)
    syncer = _syncer(request, vendor)
    provider = syncer.adapters[vendor].provider()
    if provider is None:
        raise Problem(404, "not-found", f"no OAuth client configured for {vendor}")
    cred = await gw.store.device_credential(body.credential_id)
    if cred is None or cred.clinic_id != clinic.clinic_id:
        raise Problem(404, "not-found", "no such enrolment in this clinic")
    if cred.revoked_at is not None:
        raise Problem(409, "conflict", "that enrolment was revoked")
    state, verifier = oauth.new_state(), oauth.new_verifier()
    await syncer.connections.new_state(state, vendor, cred.credential_id, body.tz, verifier)
    url = oauth.authorization_url(provider, _redirect_uri(syncer, vendor), state, verifier)
    return _json({"authorization_url": url, "state": state,
                  "expires_in_s": int(syncer.vcfg.oauth_state_ttl_s)}, 201)


def _redirect_uri(syncer: VendorSyncer, vendor: str) -> str:
    return f"{syncer.vcfg.redirect_base.rstrip('/')}/v1/oauth/{vendor}/callback"


@router.get("/v1/oauth/{vendor}/callback", summary="Where the vendor sends the patient back after consent")
async def callback(
    request: Request,
    vendor: str,
    state: Annotated[str, Query(min_length=16, max_length=128)],
    code: Annotated[str | None, Query(max_length=2048)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    gw = gateway(request)
    gw.limit_address(request)
    syncer = _syncer(request, vendor)
    adapter = syncer.adapters[vendor]
    provider = adapter.provider()
    taken = await syncer.connections.take_state(vendor, state, syncer.vcfg.oauth_state_ttl_s)
    if provider is None or taken is None:
        raise Problem(
            400, "invalid-request", "this authorization link is unknown, used or expired; ask the clinic for a new one"
        )
    if error is not None or code is None:
        raise Problem(400, "invalid-request", f"the vendor did not grant access ({error or 'no code'})")
    credential_id, tz, verifier = taken
    try:
        token = await oauth.exchange_code(provider, _redirect_uri(syncer, vendor), code, verifier)
        user = await adapter.account(token, member_id=credential_id)
    except VendorRejected as exc:
        raise Problem(400, "invalid-request", f"the vendor refused the authorization: {exc}") from None
    except (VendorUnavailable, RateLimited) as exc:
        raise Problem(503, "upstream-unavailable", str(exc), headers=retry_after(gw.config.retry_after_s)) from None
    await syncer.connections.upsert(vendor, user, credential_id, tz, token)
    await syncer.connections.enqueue(vendor, f"connect:{uuid.uuid4().hex}", user, {"kind": "backfill"})
    syncer.wake()
    return _json({"connected": True, "vendor": vendor,
                  "detail": "Your device is connected to your clinic. You can close this page."})


@router.get("/v1/vendor-connections", summary="Sync health of the clinic's vendor connections")
async def list_connections(
    request: Request, patient_id: Annotated[str | None, Query(max_length=64)] = None
) -> Response:
    gw = gateway(request)
    clinic = await gw.auth.clinic(request)
    if gw.vendors is None:
        return _json({"connections": []})
    rows = await gw.vendors.connections.health(clinic.clinic_id, patient_id)
    for r in rows:
        for k, v in r.items():
            if isinstance(v, (dt.date, dt.datetime)):
                r[k] = v.isoformat()
    return _json({"connections": rows})


@router.delete("/v1/vendor-connections/{vendor}/{vendor_user_id}", status_code=204,
               summary="Disconnect a vendor account (deregistered at the vendor where it allows)")
async def disconnect(request: Request, vendor: str, vendor_user_id: str) -> Response:
    gw = gateway(request)
    clinic = await gw.auth.clinic(request)
    syncer = _syncer(request, vendor)
    c = await syncer.connections.get(vendor, vendor_user_id)
    cred = await gw.store.device_credential(c.credential_id) if c else None
    if c is None or cred is None or cred.clinic_id != clinic.clinic_id:
        raise Problem(404, "not-found", "no such connection in this clinic")
    adapter = syncer.adapters[vendor]
    undo = getattr(adapter, "disconnect", None)
    if undo is not None and c.status == "active":
        # Our side stops syncing either way: the connection is marked below.
        with contextlib.suppress(VendorUnavailable, RateLimited, VendorRejected):
            await undo(c.token, vendor_user_id)
    await syncer.connections.record(vendor, vendor_user_id, status="disconnected")
    return Response(status_code=204)
