"""Polar AccessLink (v3): webhook verification and parsing, the daily activity-samples call, and
the mapping of its step samples to canonical per-interval ActivityInterval events.

Webhooks: AccessLink POSTs JSON such as
    {"event": "ACTIVITY_SUMMARY", "user_id": 475, "date": "2022-09-30",
     "timestamp": "2022-10-02T14:22:24Z", "url": "https://www.polaraccesslink.com/v3/users/activities/2022-09-30"}
signed with `Polar-Webhook-Signature` = hex HMAC-SHA256 of the raw body under the webhook's
`signature_secret_key`; a `PING` is sent when the webhook is created and must get 200.

Data: GET /v3/users/activities/samples/{date} (user's OAuth bearer token) returns
    {"date": "...", "steps": {"interval_ms": 60000, "total_steps": 8823,
                              "samples": [{"steps": 12, "timestamp": "2025-08-14T00:02"}, ...]}}
Sample times are the device's local wall-clock time, and runs of repeated values are left out
(a gap longer than interval_ms repeats the previous sample's value), so both are undone here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import httpx
from pydantic import BaseModel, ConfigDict, Field

from device_adapters.context import DeviceContext
from rtm.contract import ActivityInterval, Provenance

ADAPTER = "polar-accesslink"
VENDOR = "polar"
SIGNATURE_HEADER = "Polar-Webhook-Signature"
MAX_SLOTS_PER_DAY = 2 * 24 * 60  # a day at 30 s resolution: more is not a real response


class VendorUnavailable(RuntimeError):
    """The vendor API failed or timed out: retry later (the webhook answers 503)."""


class VendorRejected(RuntimeError):
    """The vendor refused the user's token (401/403): the link needs re-authorisation."""


def sign(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    if not header:
        return False
    return hmac.compare_digest(sign(secret, body), header.strip().lower())


class WebhookPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    event: Annotated[str, Field(max_length=64)]
    user_id: int | None = None
    entity_id: Annotated[str, Field(max_length=128)] | None = None
    date: dt.date | None = None
    timestamp: datetime | None = None
    url: Annotated[str, Field(max_length=2048)] | None = None


class StepSample(BaseModel):
    model_config = ConfigDict(extra="ignore")
    steps: Annotated[int, Field(ge=0)]
    timestamp: datetime  # local wall-clock time, no offset


class ActivitySteps(BaseModel):
    model_config = ConfigDict(extra="ignore")
    interval_ms: Annotated[int, Field(ge=1000, le=3_600_000)]
    total_steps: int | None = None
    samples: list[StepSample] = Field(default_factory=list)


class ActivityDayWithSamples(BaseModel):
    model_config = ConfigDict(extra="ignore")
    date: dt.date
    steps: ActivitySteps | None = None


def step_intervals(day: ActivityDayWithSamples, tz: str, ctx: DeviceContext) -> list[ActivityInterval]:
    """One interval per sample slot, filling the slots Polar left out with the repeated value."""
    if day.steps is None or not day.steps.samples:
        return []
    zone = ZoneInfo(tz)
    step = timedelta(milliseconds=day.steps.interval_ms)
    # Wall-clock times to instants first, then fill gaps in absolute time: a DST change inside a
    # gap neither invents nor loses a slot.
    instants = sorted(
        (s.timestamp.replace(tzinfo=None).replace(tzinfo=zone).astimezone(UTC), s.steps)
        for s in day.steps.samples
    )
    slots: list[tuple[datetime, int]] = []
    for k, (t, steps) in enumerate(instants):
        nxt = instants[k + 1][0] if k + 1 < len(instants) else t + step
        while t < nxt and len(slots) < MAX_SLOTS_PER_DAY:
            slots.append((t, steps))
            t += step
    provenance = Provenance(adapter=ADAPTER, vendor=VENDOR, device_id=ctx.device_id)
    out: list[ActivityInterval] = []
    for start, steps in slots:
        offset = start.astimezone(zone).utcoffset()
        out.append(
            ActivityInterval(
                patient_id=ctx.patient_id,
                episode_id=ctx.episode_id,
                provenance=provenance,
                source="vendor_cloud",
                start=start,
                end=start + step,
                steps=steps,
                zone_offset_s=None if offset is None else int(offset.total_seconds()),
            )
        )
    return out


class PolarClient:
    """The one AccessLink call the gateway makes. Give it an httpx client (tests pass one that
    talks to the local stand-in of the API)."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, timeout_s: float) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    async def activity_samples(self, access_token: str, day: dt.date) -> ActivityDayWithSamples | None:
        url = f"{self.base_url}/v3/users/activities/samples/{day.isoformat()}"
        try:
            resp = await self.http.get(
                url,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
                timeout=self.timeout_s,
            )
        except httpx.HTTPError as exc:
            raise VendorUnavailable(f"AccessLink request failed: {type(exc).__name__}") from None
        if resp.status_code == 204:
            return None
        if resp.status_code in (401, 403):
            raise VendorRejected(f"AccessLink refused the user's token ({resp.status_code})")
        if resp.status_code != 200:
            raise VendorUnavailable(f"AccessLink answered {resp.status_code}")
        try:
            body: Any = resp.json()
            return ActivityDayWithSamples.model_validate(body)
        except ValueError as exc:
            raise VendorUnavailable(f"AccessLink sent an unreadable body: {type(exc).__name__}") from None
