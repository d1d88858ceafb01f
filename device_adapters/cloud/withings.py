"""Withings (Health Data API): OAuth with Withings' own token answer, the intraday activity call,
notification subscriptions, and the mapping of its step series to canonical ActivityIntervals.

What Withings publishes (developer.withings.com) and what this relies on:
- Every answer is HTTP 200 with the outcome in the JSON body: {"status": 0, "body": {...}} on
  success, another `status` on failure (e.g. 401 and 100-102/200: the user's token is refused;
  601: too many requests; 2554/2555 and 5xx-like codes: Withings failed or the call was wrong).
  The HTTP status is therefore not the outcome; `check` reads the body.
- Tokens: POST {api}/v2/oauth2 with `action=requesttoken`, grant_type, client_id, client_secret
  (in the body), code and redirect_uri; the answer is {"status": 0, "body": {"userid": ...,
  "access_token": ..., "refresh_token": ..., "expires_in": 10800, ...}}. Refresh is the same call
  with grant_type=refresh_token; the refresh token rotates (the old one stops working), so the new
  one is stored at once (the syncer does). No PKCE is documented, so none is sent.
- Data: POST {api}/v2/measure `action=getintradayactivity` with `startdate`/`enddate` in unix
  seconds and `data_fields=steps`; the answer's `body.series` maps each sample's start (unix
  seconds, as a string key) to {"steps": n, "duration": s, ...}. At most 24 h is returned per call
  (a longer range is cut, not refused), so a local day is asked for in pieces of at most 24 h:
  a 25-hour DST day takes two calls.
- Rate limit: 120 requests per minute per application; over it, status 601 in the body. No reset
  time is given, so the wait is the one-minute window.
- Notifications: POST {api}/notify `action=subscribe`, `callbackurl`, `appli=16` (activity).
  Withings POSTs form-encoded `userid`, `appli`, `startdate`, `enddate` to the callback, must get
  200 within two seconds, retries failed deliveries, and signs nothing: a notification is only a
  hint. The gateway queues a sync of the named user and re-fetches from Withings with its own
  token, so a forged notification can at most cause a fetch of what Withings really holds.
  `appli=46` with `action=unlink` announces a revoked grant; the re-fetch then gets status 401.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson

from device_adapters.cloud.connections import Notification
from device_adapters.cloud.documents import append_valid
from device_adapters.cloud.errors import RateLimited, VendorRejected, VendorUnavailable, raise_for_vendor
from device_adapters.cloud.http import VendorHttp
from device_adapters.cloud.oauth import OAuthProvider
from device_adapters.cloud.settings import VendorSettings
from device_adapters.context import DeviceContext
from rtm.contract import ActivityInterval, Provenance

ADAPTER = "withings-api"
VENDOR = "withings"
MAX_RANGE_S = 24 * 3600  # Withings returns at most 24 h of intraday data per call
ACTIVITY_APPLI = 16  # notification category of activity data
UNLINK_APPLI = 46
TOKEN_REFUSED = frozenset({100, 101, 102, 200, 401})  # "authentication failed" family
TOO_MANY = 601
RATE_WINDOW_S = 60.0  # Withings' limit is per minute and it gives no reset time


def check(body: Any, what: str) -> dict[str, Any]:
    """The `body` of a Withings answer whose JSON `status` is 0; the errors module's errors otherwise."""
    if not isinstance(body, dict) or not isinstance(body.get("status"), int):
        raise VendorUnavailable(f"Withings {what}: an answer without a status")
    status = int(body["status"])
    if status == 0:
        inner = body.get("body")
        return inner if isinstance(inner, dict) else {}
    if status in TOKEN_REFUSED:
        raise VendorRejected(f"Withings {what}: the vendor refused the user's token (status {status})")
    if status == TOO_MANY:
        raise RateLimited(RATE_WINDOW_S, f"Withings {what}")
    raise VendorUnavailable(f"Withings {what}: status {status} {str(body.get('error', ''))[:120]}")


def token_response(resp: httpx.Response) -> httpx.Response:
    """Withings' token answer rewritten as RFC 6749's, so authlib can read it: the inner body on
    status 0; an OAuth error otherwise (a refused code or refresh token is `invalid_grant`)."""
    try:
        raw = resp.json()
    except ValueError:
        return resp
    if not isinstance(raw, dict) or "status" not in raw:
        return resp
    if raw.get("status") == 0 and isinstance(raw.get("body"), dict):
        out: dict[str, Any] = dict(raw["body"])
        out["userid"] = str(out.get("userid", ""))
    elif raw.get("status") == TOO_MANY:
        out = {"error": "temporarily_unavailable", "error_description": "Withings: too many requests"}
    else:
        out = {"error": "invalid_grant", "error_description": f"Withings status {raw.get('status')}"}
    return httpx.Response(200, content=orjson.dumps(out), headers={"content-type": "application/json"},
                          request=resp.request)


def provider(client_id: str, client_secret: str, authorize_url: str, token_url: str) -> OAuthProvider:
    return OAuthProvider(
        vendor=VENDOR, client_id=client_id, client_secret=client_secret, authorize_url=authorize_url,
        token_url=token_url, scope="user.activity", pkce=False, token_auth="client_secret_post",
        token_params=(("action", "requesttoken"),), token_response=token_response,
    )


def day_ranges(day: dt.date, tz: str) -> list[tuple[int, int]]:
    """The patient-local day as unix-second ranges of at most 24 h (a 25-hour DST day: two)."""
    zone = ZoneInfo(tz)
    start = int(datetime.combine(day, dt.time(), zone).timestamp())
    end = int(datetime.combine(day + timedelta(days=1), dt.time(), zone).timestamp())
    return [(a, min(a + MAX_RANGE_S, end)) for a in range(start, end, MAX_RANGE_S)]


def step_intervals(series: dict[str, Any], start_s: int, end_s: int, tz: str,
                   ctx: DeviceContext) -> list[ActivityInterval]:
    """One interval per series entry with steps, starting inside [start_s, end_s)."""
    zone = ZoneInfo(tz)
    provenance = Provenance(adapter=ADAPTER, vendor=VENDOR, device_id=ctx.device_id)
    out: list[ActivityInterval] = []
    for key in sorted(series, key=int):
        entry = series[key]
        t = int(key)
        if not (start_s <= t < end_s) or not isinstance(entry, dict) or entry.get("steps") is None:
            continue
        duration = int(entry.get("duration") or 60)  # seconds the sample covers
        start = datetime.fromtimestamp(t, UTC)
        offset = start.astimezone(zone).utcoffset()
        append_valid(
            out, VENDOR, patient_id=ctx.patient_id, episode_id=ctx.episode_id, provenance=provenance,
            source="vendor_cloud", start=start, end=start + timedelta(seconds=max(1, duration)),
            steps=int(entry["steps"]),
            zone_offset_s=None if offset is None else int(offset.total_seconds()),
        )
    return out


class WithingsClient(VendorHttp):
    label = "Withings"

    async def _post(self, path: str, what: str, access_token: str, form: dict[str, Any]) -> dict[str, Any]:
        resp = await self.send("POST", f"{self.base_url}{path}", what, data=form,
                               headers={"Authorization": f"Bearer {access_token}"})
        raise_for_vendor(resp, f"Withings {what}")  # a proxy in front may still answer 429/5xx
        return check(self.json_of(resp, what), what)

    async def intraday(self, access_token: str, start_s: int, end_s: int) -> dict[str, Any]:
        if end_s - start_s > MAX_RANGE_S:
            raise ValueError("Withings intraday ranges are at most 24 h")
        body = await self._post("/v2/measure", "intraday activity", access_token, {
            "action": "getintradayactivity", "startdate": start_s, "enddate": end_s, "data_fields": "steps"})
        series = body.get("series")
        return series if isinstance(series, dict) else {}  # an empty series may come as []

    async def subscribe(self, access_token: str, callback_url: str) -> None:
        await self._post("/notify", "notification subscription", access_token, {
            "action": "subscribe", "callbackurl": callback_url, "appli": ACTIVITY_APPLI})

    async def revoke_subscription(self, access_token: str, callback_url: str) -> None:
        await self._post("/notify", "notification revocation", access_token, {
            "action": "revoke", "callbackurl": callback_url, "appli": ACTIVITY_APPLI})


class WithingsAdapter:
    vendor = VENDOR

    def __init__(self, client: WithingsClient, oauth_provider: OAuthProvider | None, notify_url: str) -> None:
        self.client = client
        self.oauth_provider = oauth_provider
        self.notify_url = notify_url

    def provider(self) -> OAuthProvider | None:
        return self.oauth_provider

    async def account(self, token: dict[str, Any], member_id: str) -> str:
        user = str(token.get("userid") or "")
        if not user:
            raise VendorUnavailable("Withings' token answer has no userid")
        await self.client.subscribe(str(token["access_token"]), self.notify_url)
        return user

    async def fetch_day(
        self, token: dict[str, Any], day: dt.date, tz: str, ctx: DeviceContext, complete: bool
    ) -> list[ActivityInterval]:
        out: list[ActivityInterval] = []
        for a, b in day_ranges(day, tz):
            series = await self.client.intraday(str(token["access_token"]), a, b)
            out.extend(step_intervals(series, a, b, tz, ctx))
        return out

    async def disconnect(self, token: dict[str, Any], user: str) -> None:
        await self.client.revoke_subscription(str(token["access_token"]), self.notify_url)


def notification_id(body: bytes) -> str:
    """Withings notifications carry no id: the form body (user, category, range) is the identity."""
    return hashlib.sha256(body).hexdigest()


def notified_day(n: Notification) -> dt.date | None:
    raw = n.payload.get("date")
    return dt.date.fromisoformat(raw) if isinstance(raw, str) else None


def adapters(http: httpx.AsyncClient, vcfg: VendorSettings, timeout_s: float) -> dict[str, WithingsAdapter]:
    """The Withings adapter when its OAuth client is configured (the gateway's registry)."""
    if not vcfg.withings_client_id or vcfg.withings_client_secret is None:
        return {}
    return {VENDOR: WithingsAdapter(
        WithingsClient(http, vcfg.withings_api_base, timeout_s),
        provider(vcfg.withings_client_id, vcfg.withings_client_secret.get_secret_value(),
                 vcfg.withings_authorize_url, vcfg.withings_token_url),
        f"{vcfg.webhook_base or vcfg.redirect_base}".rstrip("/") + "/v1/webhooks/withings",
    )}
