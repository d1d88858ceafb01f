"""Vendor webhooks. Verification and parsing live in device_adapters; this route decides what is
accepted. Polar AccessLink: PING -> 200; ACTIVITY_SUMMARY -> fetch that day's step samples,
accept them as ActivityIntervals (ingest.acceptance), 200 only once accepted; 503 on a database,
broker (broker mode) or AccessLink failure so that Polar delivers the notification again. Notifications for unknown or
revoked users, and other event types, are acknowledged and ignored (counted in metrics)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from device_adapters.cloud import polar
from device_adapters.context import DeviceContext
from ingest.acceptance import accept
from ingest.bodies import parse_json, read_body
from ingest.metrics import WEBHOOKS
from ingest.problems import Problem, retry_after
from ingest.state import gateway, request_id
from ingest.validation import check_item
from rtm.contract import Event

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
    if secret is None or gw.polar is None:
        raise Problem(404, "not-found", "the Polar integration is not configured")
    body = await read_body(request, MAX_WEBHOOK_BYTES)
    if not polar.verify_signature(
        secret.get_secret_value().encode(), body, request.headers.get(polar.SIGNATURE_HEADER)
    ):
        WEBHOOKS.labels("polar", "bad-signature").inc()
        raise Problem(
            401, "invalid-signature", f"the {polar.SIGNATURE_HEADER} header does not match the body"
        )
    try:
        payload = polar.WebhookPayload.model_validate(parse_json(body))
    except ValidationError as exc:
        raise Problem(
            400, "malformed-body", f"not a Polar webhook payload ({exc.error_count()} errors)"
        ) from None
    if payload.event == "PING":
        return _ok(request, "ping")
    if payload.event != "ACTIVITY_SUMMARY" or payload.user_id is None or payload.date is None:
        return _ok(request, "ignored")
    link = await gw.store.vendor_link("polar", str(payload.user_id))
    cred = await gw.store.device_credential(link.credential_id) if link else None
    if link is None or cred is None or cred.revoked_at is not None:
        return _ok(request, "unlinked")
    # Rate limited as the linked device: a flood of notifications cannot flood AccessLink calls.
    gw.rate_limit(cred.credential_id)
    try:
        day = await gw.polar.activity_samples(link.access_token, payload.date)
    except polar.VendorRejected:
        log.warning("AccessLink refused the token of a linked user: the link needs re-authorisation")
        return _ok(request, "token-rejected")
    except polar.VendorUnavailable as exc:
        raise Problem(
            503, "upstream-unavailable", str(exc), headers=retry_after(gw.config.retry_after_s)
        ) from None
    ctx = DeviceContext(patient_id=cred.patient_id, episode_id=cred.episode_id, device_id=cred.device_id)
    intervals = polar.step_intervals(day, link.tz, ctx) if day is not None else []
    now, skew = datetime.now(UTC), timedelta(seconds=gw.config.clock_skew_s)
    # No client to correct vendor data: intervals outside the enrolment window are skipped, not fatal.
    events: list[Event] = []
    for i, interval in enumerate(intervals):
        checked = check_item(i, interval, cred, now, skew)
        if isinstance(checked, Event):
            events.append(checked)
    results = await accept(gw.store, gw.publisher, gw.relay, gw.config, events)
    accepted = sum(1 for r in results if r.status == "accepted")
    return _ok(
        request,
        "accepted",
        accepted=accepted,
        duplicates=len(results) - accepted,
        skipped=len(intervals) - len(events),
    )
