"""Webhooks of Google Health API v4 and Oura API v2, and their place in the gateway's vendor
registry (`adapters`, `DAY_OF`). Like the Polar route: verify, check the replay window,
deduplicate, queue, answer at once; the vendor syncer does the fetching.

- Google Health: every POST must carry `Authorization` equal to the subscriber's configured
  secret (401 otherwise, which is also the answer Google's verification expects without it);
  {"type": "verification"} with it is answered 201; a steps notification is queued.
- Oura: the subscription handshake is a GET with our `verification_token` and a `challenge`
  (answered {"challenge": ...}, 401 for another token); deliveries are POSTs signed with
  `x-oura-signature` over `x-oura-timestamp` + body under the client secret.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import httpx
import orjson
from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from device_adapters.cloud import google_health, oura
from device_adapters.cloud.connections import Notification
from device_adapters.cloud.settings import VendorSettings
from ingest.bodies import parse_json, read_body
from ingest.metrics import WEBHOOKS
from ingest.problems import Problem
from ingest.state import gateway, request_id
from ingest.vendor_sync import CloudAdapter, VendorSyncer

router = APIRouter(tags=["webhooks"])
MAX_WEBHOOK_BYTES = 64 * 1024


def adapters(vcfg: VendorSettings, http: httpx.AsyncClient, timeout_s: float) -> dict[str, CloudAdapter]:
    """The vendors whose OAuth client is configured (a gateway without it neither answers their
    webhooks nor claims their queued notifications)."""
    out: dict[str, CloudAdapter] = {}
    g_secret, o_secret = vcfg.google_health_client_secret, vcfg.oura_client_secret
    if vcfg.google_health_client_id and g_secret:
        out[google_health.VENDOR] = google_health.GoogleHealthAdapter(
            google_health.GoogleHealthClient(http, vcfg.google_health_api_base, timeout_s),
            google_health.provider(vcfg.google_health_client_id, g_secret.get_secret_value(),
                                   vcfg.google_health_authorize_url, vcfg.google_health_token_url),
            vcfg.revision_days,
        )
    if vcfg.oura_client_id and o_secret:
        out[oura.VENDOR] = oura.OuraAdapter(
            oura.OuraClient(http, vcfg.oura_api_base, timeout_s, vcfg.oura_client_id, o_secret.get_secret_value()),
            oura.provider(vcfg.oura_client_id, o_secret.get_secret_value(), vcfg.oura_authorize_url,
                          vcfg.oura_token_url),
            vcfg.revision_days,
        )
    return out


def _google_day(n: Notification) -> dt.date | None:
    # The UTC date of the changed interval: the patient-local day is this one or a neighbour, and
    # the recent days are re-read on every sync anyway (`revision_days`).
    raw = (n.payload.get("interval") or {}).get("startTime")
    return datetime.fromisoformat(raw.replace("Z", "+00:00")).date() if isinstance(raw, str) else None


# Oura's notifications name a document, not a day: a plain sync (gaps, today, recent days).
DAY_OF: dict[str, Callable[[Notification], dt.date | None]] = {
    google_health.VENDOR: _google_day, oura.VENDOR: lambda n: None,
}


def _ok(request: Request, vendor: str, outcome: str, status: int = 200) -> Response:
    WEBHOOKS.labels(vendor, outcome).inc()
    return Response(orjson.dumps({"request_id": request_id(request), "outcome": outcome}),
                    status_code=status, media_type="application/json")


def _syncer(request: Request, vendor: str) -> VendorSyncer:
    syncer = gateway(request).vendors
    if syncer is None or vendor not in syncer.adapters:
        raise Problem(404, "not-found", f"the {vendor} integration is not configured")
    return syncer


def _in_window(syncer: VendorSyncer, vendor: str, stamp: datetime) -> None:
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    if abs((datetime.now(UTC) - stamp).total_seconds()) > syncer.vcfg.webhook_window_s:
        WEBHOOKS.labels(vendor, "stale").inc()
        raise Problem(400, "stale-notification", "the notification's timestamp is outside the replay window")


async def _queue(request: Request, syncer: VendorSyncer, vendor: str, user: str, nid: str,
                 payload: dict[str, object]) -> Response:
    link = await syncer.connections.get(vendor, user)
    if link is None:
        return _ok(request, vendor, "unlinked")
    if link.status != "active":
        return _ok(request, vendor, "connection-" + link.status.replace("_", "-"))
    fresh = await syncer.connections.enqueue(vendor, nid, user, payload)
    if fresh:
        syncer.wake()
    return _ok(request, vendor, "queued" if fresh else "duplicate")


@router.post("/v1/webhooks/google-health", summary="Google Health API subscriber endpoint (Authorization = secret)")
async def google_health_webhook(request: Request) -> Response:
    vendor = google_health.VENDOR
    gateway(request).limit_address(request)
    syncer = _syncer(request, vendor)
    secret = syncer.vcfg.google_health_webhook_secret
    if secret is None:
        raise Problem(404, "not-found", "the Google Health subscriber secret is not configured")
    body = await read_body(request, MAX_WEBHOOK_BYTES)
    if not google_health.authorized(secret.get_secret_value().encode(), request.headers.get("authorization")):
        WEBHOOKS.labels(vendor, "bad-authorization").inc()
        raise Problem(401, "invalid-signature", "the Authorization header is not the subscriber's secret")
    try:
        payload = google_health.Notification.model_validate(parse_json(body))
    except (ValidationError, Problem):
        raise Problem(400, "malformed-body", "not a Google Health notification") from None
    if payload.type == "verification":
        return _ok(request, vendor, "verified", 201)
    if payload.dataType != "steps" or payload.healthUserId is None:
        return _ok(request, vendor, "ignored")
    if payload.publishTime is None:
        raise Problem(400, "malformed-body", "a notification needs its publishTime")
    _in_window(syncer, vendor, payload.publishTime)
    return await _queue(request, syncer, vendor, payload.healthUserId, google_health.notification_id(body),
                        payload.model_dump(mode="json"))


@router.get("/v1/webhooks/oura", summary="Oura's subscription handshake (verification_token and challenge)")
async def oura_challenge(
    request: Request,
    verification_token: Annotated[str, Query(max_length=256)],
    challenge: Annotated[str, Query(max_length=256)],
) -> Response:
    gateway(request).limit_address(request)
    syncer = _syncer(request, oura.VENDOR)
    mine = syncer.vcfg.oura_verification_token
    if mine is None or not hmac.compare_digest(verification_token.encode(), mine.get_secret_value().encode()):
        WEBHOOKS.labels(oura.VENDOR, "bad-verification-token").inc()
        raise Problem(401, "invalid-signature", "the verification_token is not ours")
    WEBHOOKS.labels(oura.VENDOR, "challenge").inc()
    return Response(orjson.dumps({"challenge": challenge}), media_type="application/json")


@router.post("/v1/webhooks/oura", summary="Oura webhook delivery (x-oura-signature over timestamp + body)")
async def oura_webhook(request: Request) -> Response:
    vendor = oura.VENDOR
    gateway(request).limit_address(request)
    syncer = _syncer(request, vendor)
    secret = syncer.vcfg.oura_client_secret
    if secret is None:
        raise Problem(404, "not-found", "the Oura client secret is not configured")
    body = await read_body(request, MAX_WEBHOOK_BYTES)
    ts = request.headers.get(oura.TIMESTAMP_HEADER)
    if not oura.verify_signature(secret.get_secret_value().encode(), ts, body,
                                 request.headers.get(oura.SIGNATURE_HEADER)):
        WEBHOOKS.labels(vendor, "bad-signature").inc()
        raise Problem(401, "invalid-signature", f"the {oura.SIGNATURE_HEADER} header does not match")
    assert ts is not None
    try:
        stamp = oura.parse_timestamp(ts)
    except ValueError:
        raise Problem(400, "malformed-body", f"unreadable {oura.TIMESTAMP_HEADER}") from None
    # The signature covers the timestamp: outside the window a copy is refused, inside it the
    # notification id (digest of timestamp and body) is deduplicated.
    _in_window(syncer, vendor, stamp)
    try:
        payload = oura.WebhookPayload.model_validate(parse_json(body))
    except (ValidationError, Problem):
        raise Problem(400, "malformed-body", "not an Oura webhook payload") from None
    if payload.data_type != "daily_activity" or payload.user_id is None:
        return _ok(request, vendor, "ignored")
    return await _queue(request, syncer, vendor, payload.user_id, oura.notification_id(ts, body),
                        payload.model_dump(mode="json"))
