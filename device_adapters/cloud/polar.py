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
(a gap longer than interval_ms repeats the previous sample's value), so both are undone here; on
a complete day the last value runs to the end of the local day.

Connecting (AccessLink's published flow): the patient consents at
flow.polar.com/oauth2/authorization (`state` carried through); the code is exchanged at
polarremote.com/v2/oauth2/token with HTTP Basic client credentials; the answer carries
`access_token`, `expires_in` and `x_user_id`, and no refresh token (an expired or revoked token
means the patient connects again). The user is then registered, POST /v3/users {"member-id": ...}
(409: already registered). AccessLink's documentation describes no PKCE, so none is sent.
Webhooks are managed with the client credentials: POST /v3/webhooks (AccessLink PINGs the URL
first and creates the webhook only on 200; the answer holds `signature_secret_key`, shown only
then), GET /v3/webhooks, PATCH /v3/webhooks/{id}, POST /v3/webhooks/activate (AccessLink
deactivates a webhook whose deliveries keep failing). How long AccessLink keeps retrying a failed
delivery is not public: missed notifications are covered by the gap backfill.
Rate limits: 429 with RateLimit-Usage / RateLimit-Limit / RateLimit-Reset headers; honoured via
`errors.raise_for_vendor`.
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

from device_adapters.cloud.documents import append_valid
from device_adapters.cloud.errors import VendorUnavailable, raise_for_vendor
from device_adapters.cloud.http import VendorHttp
from device_adapters.cloud.oauth import OAuthProvider
from device_adapters.context import DeviceContext
from rtm.contract import ActivityInterval, Provenance

ADAPTER = "polar-accesslink"
VENDOR = "polar"
SIGNATURE_HEADER = "Polar-Webhook-Signature"
MAX_SLOTS_PER_DAY = 2 * 24 * 60  # a day at 30 s resolution: more is not a real response


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


def step_intervals(
    day: ActivityDayWithSamples, tz: str, ctx: DeviceContext, complete: bool = False
) -> list[ActivityInterval]:
    """One interval per sample slot, filling the slots Polar left out with the repeated value. On a
    `complete` (past) day the last value repeats to the local day's end; on today it covers one slot."""
    if day.steps is None or not day.steps.samples:
        return []
    zone = ZoneInfo(tz)
    day_end = datetime.combine(day.date + timedelta(days=1), dt.time(), zone).astimezone(UTC)
    step = timedelta(milliseconds=day.steps.interval_ms)
    # Wall-clock times to instants first, then fill gaps in absolute time: a DST change inside a
    # gap neither invents nor loses a slot.
    # Samples come in time order. When clocks fall back, the repeated hour's wall times recur:
    # a wall time that does not advance is the second pass (fold=1). How AccessLink writes that
    # hour is not public; this reading keeps every sample and keeps them in order.
    stamped: list[tuple[datetime, int]] = []
    prev: datetime | None = None
    fold = 0
    for s in day.steps.samples:
        wall = s.timestamp.replace(tzinfo=None)
        if prev is not None and wall <= prev:
            fold = 1
        if fold and wall.replace(tzinfo=zone, fold=1).utcoffset() == wall.replace(tzinfo=zone).utcoffset():
            fold = 0  # past the repeated hour
        stamped.append((wall.replace(tzinfo=zone, fold=fold).astimezone(UTC), s.steps))
        prev = wall
    instants = sorted(stamped)
    slots: list[tuple[datetime, int]] = []
    for k, (t, steps) in enumerate(instants):
        nxt = instants[k + 1][0] if k + 1 < len(instants) else (day_end if complete else t + step)
        while t < nxt and len(slots) < MAX_SLOTS_PER_DAY:
            slots.append((t, steps))
            t += step
    provenance = Provenance(adapter=ADAPTER, vendor=VENDOR, device_id=ctx.device_id)
    out: list[ActivityInterval] = []
    for start, steps in slots:
        offset = start.astimezone(zone).utcoffset()
        append_valid(
            out, VENDOR,
            patient_id=ctx.patient_id,
            episode_id=ctx.episode_id,
            provenance=provenance,
            source="vendor_cloud",
            start=start,
            end=start + step,
            steps=steps,
            zone_offset_s=None if offset is None else int(offset.total_seconds()),
        )
    return out


class PolarClient(VendorHttp):
    """The AccessLink calls. Give it an httpx client (tests point it at the local fake)."""

    label = "AccessLink"

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        timeout_s: float,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> None:
        super().__init__(http, base_url, timeout_s)
        self.client_id = client_id
        self.client_secret = client_secret

    async def _call(self, method: str, path: str, what: str, **kw: Any) -> httpx.Response:
        return await self.send(method, f"{self.base_url}{path}", what, **kw)

    def _bearer(self, access_token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}

    def _basic(self) -> httpx.BasicAuth:
        if not self.client_id or not self.client_secret:
            raise RuntimeError("RTM_VENDOR_POLAR_CLIENT_ID and _SECRET are needed for this AccessLink call")
        return httpx.BasicAuth(self.client_id, self.client_secret)

    async def activity_samples(self, access_token: str, day: dt.date) -> ActivityDayWithSamples | None:
        resp = await self._call(
            "GET", f"/v3/users/activities/samples/{day.isoformat()}", "activity samples",
            headers=self._bearer(access_token),
        )
        if resp.status_code == 204:
            return None
        raise_for_vendor(resp, "AccessLink activity samples")
        try:
            body: Any = resp.json()
            return ActivityDayWithSamples.model_validate(body)
        except ValueError as exc:
            raise VendorUnavailable(f"AccessLink sent an unreadable body: {type(exc).__name__}") from None

    async def register_user(self, access_token: str, member_id: str) -> None:
        """Registration is required before any data call; 409 means it is registered already."""
        resp = await self._call(
            "POST", "/v3/users", "user registration", headers=self._bearer(access_token),
            json={"member-id": member_id},
        )
        if resp.status_code != 409:
            raise_for_vendor(resp, "AccessLink user registration")

    async def deregister_user(self, access_token: str, user_id: str) -> None:
        resp = await self._call("DELETE", f"/v3/users/{user_id}", "deregistration", headers=self._bearer(access_token))
        if resp.status_code not in (401, 403, 404):  # already gone: nothing to undo
            raise_for_vendor(resp, "AccessLink deregistration")

    async def ensure_webhook(self, url: str, events: list[str]) -> tuple[str, str | None, str]:
        """Make AccessLink's one webhook point at `url` for `events` and be active.
        Returns (webhook id, signature secret if newly created else None, what was done)."""
        resp = await self._call("GET", "/v3/webhooks", "webhook list", auth=self._basic())
        raise_for_vendor(resp, "AccessLink webhook list")
        hooks = (resp.json() or {}).get("data") or []
        if not hooks:
            resp = await self._call(
                "POST", "/v3/webhooks", "webhook creation", auth=self._basic(), json={"events": events, "url": url}
            )
            raise_for_vendor(resp, "AccessLink webhook creation (did the gateway answer the PING?)")
            data = resp.json()["data"]
            return str(data["id"]), str(data["signature_secret_key"]), "created"
        hook = hooks[0]
        done = []
        if hook.get("url") != url or sorted(hook.get("events") or []) != sorted(events):
            resp = await self._call(
                "PATCH", f"/v3/webhooks/{hook['id']}", "webhook update", auth=self._basic(),
                json={"events": events, "url": url},
            )
            raise_for_vendor(resp, "AccessLink webhook update")
            done.append("updated")
        if hook.get("active") is False:
            resp = await self._call("POST", "/v3/webhooks/activate", "webhook activation", auth=self._basic())
            raise_for_vendor(resp, "AccessLink webhook activation")
            done.append("activated")
        return str(hook["id"]), None, "+".join(done) or "unchanged"


def provider(client_id: str, client_secret: str, authorize_url: str, token_url: str) -> OAuthProvider:
    return OAuthProvider(
        vendor=VENDOR, client_id=client_id, client_secret=client_secret,
        authorize_url=authorize_url, token_url=token_url, scope=None, pkce=False,
    )


def notification_id(body: bytes) -> str:
    """AccessLink notifications carry no id of their own: the signed body is the identity (it holds
    user, event, date and the event's timestamp, so a later update of the same day differs)."""
    return hashlib.sha256(body).hexdigest()


class PolarAdapter:
    """AccessLink as the gateway's vendor syncer sees it (ingest.vendor_sync.CloudAdapter)."""

    vendor = VENDOR

    def __init__(self, client: PolarClient, oauth_provider: OAuthProvider | None) -> None:
        self.client = client
        self.oauth_provider = oauth_provider

    def provider(self) -> OAuthProvider | None:
        return self.oauth_provider

    async def account(self, token: dict[str, Any], member_id: str) -> str:
        user = token.get("x_user_id")
        if user is None:
            raise VendorUnavailable("AccessLink's token answer has no x_user_id")
        await self.client.register_user(str(token["access_token"]), member_id)
        return str(user)

    async def fetch_day(
        self, token: dict[str, Any], day: dt.date, tz: str, ctx: DeviceContext, complete: bool
    ) -> list[ActivityInterval]:
        got = await self.client.activity_samples(str(token["access_token"]), day)
        return [] if got is None else step_intervals(got, tz, ctx, complete)

    async def disconnect(self, token: dict[str, Any], user: str) -> None:
        await self.client.deregister_user(str(token["access_token"]), user)
