"""Withings and Garmin notifications. Neither vendor signs them, so trust comes from elsewhere:

- Withings (form-encoded `userid`, `appli`, `startdate`, `enddate`): only a hint. The notification
  queues a sync of the named, connected user, and the syncer re-fetches from Withings with that
  user's token: a forged notification makes us fetch what Withings really holds, nothing more.
  Withings wants 200 within two seconds and drops a subscription after repeated failures, so the
  route only checks and queues. Replays are deduplicated by the body's digest.
- Garmin (JSON; pings with a `callbackURL`, or pushed summaries): the endpoint configured at Garmin
  carries `RTM_VENDOR_GARMIN_WEBHOOK_SECRET` in its path (anything else gets 401); a ping's
  callback must be Garmin's API (the user's token is sent to it) and its upload time inside the
  replay window; each (user, summary type) entry is queued under the digest of its content, so a
  replayed delivery is a duplicate.
"""

from __future__ import annotations

import datetime as dt
import secrets
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from device_adapters.cloud import garmin, withings
from ingest.bodies import parse_json, read_body
from ingest.metrics import WEBHOOKS
from ingest.problems import Problem
from ingest.state import gateway, request_id
from ingest.vendor_sync import VendorSyncer

router = APIRouter(tags=["webhooks"])
MAX_BYTES = 1024 * 1024  # a Garmin push may hold a day of epochs for several users


def _ok(request: Request, vendor: str, outcome: str, **extra: object) -> Response:
    WEBHOOKS.labels(vendor, outcome).inc()
    return Response(orjson.dumps({"request_id": request_id(request), "outcome": outcome, **extra}),
                    media_type="application/json")


def _syncer(request: Request, vendor: str) -> VendorSyncer:
    syncer = gateway(request).vendors
    if syncer is None or vendor not in syncer.adapters:
        raise Problem(404, "not-found", f"the {vendor} integration is not configured")
    return syncer


@router.head("/v1/webhooks/withings", include_in_schema=False)
async def withings_probe(request: Request) -> Response:
    """Withings may check that a callback URL answers before it subscribes it."""
    _syncer(request, withings.VENDOR)
    return Response(status_code=200)


@router.post("/v1/webhooks/withings", summary="Withings data notification (form-encoded, unsigned)")
async def withings_hook(request: Request) -> Response:
    gw = gateway(request)
    gw.limit_address(request)
    syncer = _syncer(request, withings.VENDOR)
    body = await read_body(request, 16 * 1024)
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    try:
        user = str(int(form["userid"]))
        appli = int(form["appli"])
        start = int(form["startdate"]) if "startdate" in form else None
    except (KeyError, ValueError):
        raise Problem(400, "malformed-body", "a Withings notification needs integer userid and appli") from None
    if appli not in (withings.ACTIVITY_APPLI, withings.UNLINK_APPLI):
        return _ok(request, withings.VENDOR, "ignored")
    now = datetime.now(UTC).timestamp()
    if start is not None and start > now + syncer.vcfg.webhook_window_s:
        WEBHOOKS.labels(withings.VENDOR, "stale").inc()
        raise Problem(400, "stale-notification", "the notification names data from the future")
    link = await syncer.connections.get(withings.VENDOR, user)
    if link is None:
        return _ok(request, withings.VENDOR, "unlinked")
    if link.status != "active":
        return _ok(request, withings.VENDOR, "connection-" + link.status.replace("_", "-"))
    day: dt.date | None = None
    if start is not None:
        day = datetime.fromtimestamp(start, UTC).astimezone(ZoneInfo(link.tz)).date()
    payload = {"appli": appli, "startdate": start, "date": day.isoformat() if day else None}
    fresh = await syncer.connections.enqueue(withings.VENDOR, withings.notification_id(body), user, payload)
    if fresh:
        syncer.wake()
    return _ok(request, withings.VENDOR, "queued" if fresh else "duplicate")


@router.post("/v1/webhooks/garmin/{secret}", summary="Garmin Health API ping or push (unsigned; secret URL)")
async def garmin_hook(request: Request, secret: Annotated[str, Path(max_length=200)]) -> Response:
    gw = gateway(request)
    gw.limit_address(request)
    syncer = _syncer(request, garmin.VENDOR)
    want = syncer.vcfg.garmin_webhook_secret
    if want is None or not secrets.compare_digest(secret.encode(), want.get_secret_value().encode()):
        WEBHOOKS.labels(garmin.VENDOR, "bad-signature").inc()
        raise Problem(401, "invalid-signature", "this is not the Garmin endpoint's URL")
    body = parse_json(await read_body(request, MAX_BYTES))
    if not isinstance(body, dict):
        raise Problem(400, "malformed-body", "a Garmin notification is a JSON object")
    entries = garmin.split_notification(body)
    now = datetime.now(UTC).timestamp()
    outcomes: list[str] = []
    for user, nid, payload in entries:
        if payload["kind"] == "ping":
            if not garmin.trusted_callback(str(payload["callbackURL"]), syncer.vcfg.garmin_api_base):
                WEBHOOKS.labels(garmin.VENDOR, "bad-signature").inc()
                raise Problem(400, "malformed-body", "a ping's callbackURL is not Garmin's API")
            uploaded = payload.get("uploadEndTimeInSeconds")
            if not isinstance(uploaded, int) or abs(now - uploaded) > syncer.vcfg.webhook_window_s:
                outcomes.append("stale")
                continue
        link = await syncer.connections.get(garmin.VENDOR, user)
        if link is None or link.status != "active":
            outcomes.append("unlinked" if link is None else "connection-" + link.status.replace("_", "-"))
            continue
        fresh = await syncer.connections.enqueue(garmin.VENDOR, nid, user, payload)
        outcomes.append("queued" if fresh else "duplicate")
    if "queued" in outcomes:
        syncer.wake()
    for o in outcomes:
        WEBHOOKS.labels(garmin.VENDOR, o).inc()
    return Response(orjson.dumps({"request_id": request_id(request), "outcomes": outcomes}),
                    media_type="application/json")
