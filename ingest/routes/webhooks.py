"""Vendor webhooks. Verification and parsing live in device_adapters; this route verifies, checks
the replay window, deduplicates and queues (ingest.vendor_sync does the fetching), so the vendor
gets its answer fast. Polar AccessLink: PING -> 200; ACTIVITY_SUMMARY -> queued (200 once the
queue row is committed; 503 when the database is down, so that Polar delivers again).
Notifications for unknown or inactive connections, and other event types, are acknowledged and
ignored (counted in metrics)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from device_adapters.cloud import polar
from ingest.bodies import parse_json, read_body
from ingest.metrics import WEBHOOKS
from ingest.problems import Problem
from ingest.state import gateway, request_id

router = APIRouter(tags=["webhooks"])
log = logging.getLogger("ingest.webhooks")
MAX_WEBHOOK_BYTES = 64 * 1024


def _ok(request: Request, outcome: str, **extra: object) -> Response:
    WEBHOOKS.labels("polar", outcome).inc()
    return Response(
        orjson.dumps({"request_id": request_id(request), "outcome": outcome, **extra}),
        media_type="application/json",
    )


@router.post("/v1/webhooks/polar", summary="Polar AccessLink webhook (signed with Polar-Webhook-Signature)")
async def polar_webhook(request: Request) -> Response:
    gw = gateway(request)
    gw.limit_address(request)
    secret = gw.config.polar_webhook_secret
    if secret is None or gw.polar is None or gw.vendors is None:
        raise Problem(404, "not-found", "the Polar integration is not configured")
    body = await read_body(request, MAX_WEBHOOK_BYTES)
    try:
        payload = polar.WebhookPayload.model_validate(parse_json(body))
    except (ValidationError, Problem):
        payload = None
    # AccessLink PINGs a new webhook before it hands out the signing secret, and creates the
    # webhook only on 200: a PING is answered unverified (it carries nothing and changes nothing).
    if payload is not None and payload.event == "PING":
        return _ok(request, "ping")
    if not polar.verify_signature(
        secret.get_secret_value().encode(), body, request.headers.get(polar.SIGNATURE_HEADER)
    ):
        WEBHOOKS.labels("polar", "bad-signature").inc()
        raise Problem(
            401, "invalid-signature", f"the {polar.SIGNATURE_HEADER} header does not match the body"
        )
    if payload is None:
        raise Problem(400, "malformed-body", "not a Polar webhook payload")
    if payload.event != "ACTIVITY_SUMMARY" or payload.user_id is None or payload.date is None:
        return _ok(request, "ignored")
    syncer = gw.vendors
    assert syncer is not None
    if payload.timestamp is None:
        raise Problem(400, "malformed-body", "an ACTIVITY_SUMMARY notification needs its timestamp")
    stamp = payload.timestamp if payload.timestamp.tzinfo else payload.timestamp.replace(tzinfo=UTC)
    # Replay protection: the signature covers the timestamp; outside the window a copy is refused,
    # inside it the notification id (the body's digest) is deduplicated below.
    if abs((datetime.now(UTC) - stamp).total_seconds()) > syncer.vcfg.webhook_window_s:
        WEBHOOKS.labels("polar", "stale").inc()
        raise Problem(400, "stale-notification", "the notification's timestamp is outside the replay window")
    user = str(payload.user_id)
    link = await syncer.connections.get(polar.VENDOR, user)
    if link is None:
        return _ok(request, "unlinked")
    if link.status != "active":
        return _ok(request, "connection-" + link.status.replace("_", "-"))
    # Queued, answered at once; the vendor syncer fetches the day (and any gap before it).
    fresh = await syncer.connections.enqueue(
        polar.VENDOR, polar.notification_id(body), user, payload.model_dump(mode="json")
    )
    if fresh:
        syncer.wake()
    return _ok(request, "queued" if fresh else "duplicate")
