"""Garmin Health API (Garmin Connect Developer Program): OAuth 2.0 with PKCE, ping/pull and push
notifications, backfill requests, and the mapping of 15-minute epochs and dailies to canonical
ActivityIntervals.

What is public and what is not: Garmin's Health API specification is given to approved partners
under confidentiality; publicly there are only its table of contents, Garmin's developer pages and
integrators' write-ups. From those: the program historically used OAuth 1.0a (a request token,
the user's consent, an access token and secret per user) and now uses OAuth 2.0 authorization
code with PKCE (S256) at connect.garmin.com/oauth2Confirm and
diauth.garmin.com/di-oauth2-service/oauth/token, client credentials in the form, access tokens
of about a day and rotating refresh tokens; this adapter speaks only OAuth 2.0 (an OAuth 1.0a
connection has to be migrated or made again). The endpoint paths below (`/wellness-api/rest/...`),
field names and the 409 on a repeated time range follow the summaries the issue and integrators
give; the exact limits (pull range at most 24 h, backfill at most 90 days per request) are
assumptions where the public material is silent, and so is whether a pull range is also
single-use (the fake assumes it is, the stricter reading).

Data model:
- Data are keyed by *upload* time. Garmin notifies the configured endpoint either with a ping
  ({"epochs": [{"userId", "callbackURL", "uploadStartTimeInSeconds", ...}]}: fetch the URL with
  the user's token) or a push (the summaries themselves). Neither is signed; the endpoint URL
  configured at Garmin carries a secret in its path, a ping's URL must be Garmin's API, and
  fetching it with the user's own token is what makes a ping's data Garmin's.
- Epochs: 15-minute summaries, one per activity type of the window (steps summed here), with
  `startTimeInSeconds` (UTC) and `startTimeOffsetInSeconds` (the device's local offset then):
  the offset is taken as it comes, so DST and travel need no zone rules. A window uploaded again
  (the current window grows) replaces the earlier one (same event id from the window's start).
- Dailies: running totals for a `calendarDate`, re-sent as the day goes on: one day-long
  interval per date with the date as record id, so a later total overwrites, never adds. Epochs
  and dailies count the same steps; settings choose which one feeds steps (default epochs).
- A time range may be requested only once (409 afterwards). So: (1) a backfill is requested only
  for complete past days (today's data keeps arriving by notification), and a 409 on a backfill
  means it was requested before and its data came or will come by notification; (2) the
  summaries a ping pulled are stored in the queued notification before they are accepted, so a
  retry after a failure accepts the stored copy and never needs the (spent) range again.
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
from device_adapters.cloud.errors import VendorUnavailable, raise_for_vendor
from device_adapters.cloud.http import VendorHttp
from device_adapters.cloud.oauth import OAuthProvider
from device_adapters.cloud.settings import VendorSettings
from device_adapters.context import DeviceContext
from rtm.contract import ActivityInterval, Provenance
from rtm.contract.activity import MAX_INTERVAL

ADAPTER = "garmin-health"
VENDOR = "garmin"
SUMMARIES = ("epochs", "dailies")
REST = "/wellness-api/rest/"


def provider(client_id: str, client_secret: str, authorize_url: str, token_url: str) -> OAuthProvider:
    return OAuthProvider(
        vendor=VENDOR, client_id=client_id, client_secret=client_secret, authorize_url=authorize_url,
        token_url=token_url, scope=None, pkce=True, token_auth="client_secret_post",
    )


def trusted_callback(url: str, api_base: str) -> bool:
    """A ping's callback must be Garmin's API: the user's token is sent to it."""
    u, base = httpx.URL(url), httpx.URL(api_base)
    return (u.scheme, u.host, u.port) == (base.scheme, base.host, base.port) and u.path.startswith(REST)


def _offset_s(item: dict[str, Any]) -> int:
    return int(item.get("startTimeOffsetInSeconds") or 0)


def epoch_intervals(items: list[dict[str, Any]], ctx: DeviceContext) -> list[ActivityInterval]:
    """One interval per 15-minute window, steps summed over the window's activity types."""
    windows: dict[int, list[dict[str, Any]]] = {}
    for item in items:
        windows.setdefault(int(item["startTimeInSeconds"]), []).append(item)
    provenance = Provenance(adapter=ADAPTER, vendor=VENDOR, device_id=ctx.device_id)
    out: list[ActivityInterval] = []
    for t, parts in sorted(windows.items()):
        start = datetime.fromtimestamp(t, UTC)
        duration = max(int(p.get("durationInSeconds") or 900) for p in parts)
        append_valid(
            out, VENDOR, patient_id=ctx.patient_id, episode_id=ctx.episode_id, provenance=provenance,
            source="vendor_cloud", start=start, end=start + timedelta(seconds=max(1, duration)),
            steps=sum(int(p.get("steps") or 0) for p in parts),
            active_minutes=sum(float(p.get("activeTimeInSeconds") or 0) for p in parts) / 60.0,
            zone_offset_s=_offset_s(parts[0]),
        )
    return out


def daily_intervals(items: list[dict[str, Any]], ctx: DeviceContext) -> list[ActivityInterval]:
    """One interval per calendar date; the latest total of a date (by upload order) wins."""
    latest: dict[str, dict[str, Any]] = {}
    for item in items:
        latest[str(item["calendarDate"])] = item
    provenance = Provenance(adapter=ADAPTER, vendor=VENDOR, device_id=ctx.device_id)
    out: list[ActivityInterval] = []
    for date, item in sorted(latest.items()):
        start = datetime.fromtimestamp(int(item["startTimeInSeconds"]), UTC)
        # A 25-hour DST day is longer than an interval may be: its last hour is folded into the
        # day's first 24 (the total is kept; only its spread over the hours shifts).
        span = min(timedelta(seconds=int(item.get("durationInSeconds") or 86400)), MAX_INTERVAL)
        append_valid(
            out, VENDOR, patient_id=ctx.patient_id, episode_id=ctx.episode_id, provenance=provenance,
            source="vendor_cloud", source_record_id=f"daily:{date}", start=start, end=start + span,
            steps=int(item.get("steps") or 0), zone_offset_s=_offset_s(item),
        )
    return out


class GarminClient(VendorHttp):
    label = "Garmin"

    async def _call(self, method: str, url: str, what: str, token: str, **kw: Any) -> httpx.Response:
        return await self.send(method, url, what, headers={"Authorization": f"Bearer {token}"}, **kw)

    async def user_id(self, token: str) -> str:
        resp = await self._call("GET", f"{self.base_url}{REST}user/id", "user id", token)
        raise_for_vendor(resp, "Garmin user id")
        user = (resp.json() or {}).get("userId")
        if not user:
            raise VendorUnavailable("Garmin's user id answer has no userId")
        return str(user)

    async def pull(self, token: str, callback_url: str) -> list[dict[str, Any]] | None:
        """The summaries a ping announced; None when the range was pulled before (409)."""
        if not trusted_callback(callback_url, self.base_url):
            raise VendorUnavailable("a Garmin callback URL outside Garmin's API was not fetched")
        resp = await self._call("GET", callback_url, "pull", token)
        if resp.status_code == 409:
            return None
        raise_for_vendor(resp, "Garmin pull")
        body = self.json_of(resp, "pull")
        if not isinstance(body, list):
            raise VendorUnavailable("Garmin pull: not a list of summaries")
        return [x for x in body if isinstance(x, dict)]

    async def backfill(self, token: str, summary: str, start_s: int, end_s: int) -> str:
        """Ask Garmin to send a summary-time range again (it answers 202 and notifies later)."""
        resp = await self._call(
            "GET", f"{self.base_url}{REST}backfill/{summary}", "backfill", token,
            params={"summaryStartTimeInSeconds": start_s, "summaryEndTimeInSeconds": end_s},
        )
        if resp.status_code == 409:
            return "requested before"
        raise_for_vendor(resp, "Garmin backfill")
        return "requested"

    async def deregister(self, token: str) -> None:
        resp = await self._call("DELETE", f"{self.base_url}{REST}user/registration", "deregistration", token)
        if resp.status_code not in (401, 403, 404):
            raise_for_vendor(resp, "Garmin deregistration")


class GarminAdapter:
    vendor = VENDOR

    def __init__(self, client: GarminClient, oauth_provider: OAuthProvider | None, steps_from: str) -> None:
        self.client = client
        self.oauth_provider = oauth_provider
        self.steps_from = steps_from  # "epochs" or "dailies"

    def provider(self) -> OAuthProvider | None:
        return self.oauth_provider

    async def account(self, token: dict[str, Any], member_id: str) -> str:
        return await self.client.user_id(str(token["access_token"]))

    async def fetch_day(
        self, token: dict[str, Any], day: dt.date, tz: str, ctx: DeviceContext, complete: bool
    ) -> list[ActivityInterval]:
        """A complete local day is requested by backfill (its data come by notification); today
        is never requested: its range would be spent while the day still grows."""
        if complete:
            zone = ZoneInfo(tz)
            a = int(datetime.combine(day, dt.time(), zone).timestamp())
            b = int(datetime.combine(day + timedelta(days=1), dt.time(), zone).timestamp())
            await self.client.backfill(str(token["access_token"]), self.steps_from, a, b)
        return []

    async def notified_items(self, token: dict[str, Any], payload: dict[str, Any]) -> list[dict[str, Any]]:
        if isinstance(payload.get("items"), list):
            return list(payload["items"])
        got = await self.client.pull(str(token["access_token"]), str(payload.get("callbackURL", "")))
        return got or []  # None: pulled before, and what it held was stored with that notification

    def notified_intervals(
        self, payload: dict[str, Any], items: list[dict[str, Any]], ctx: DeviceContext
    ) -> list[ActivityInterval]:
        summary = payload.get("summary")
        if summary != self.steps_from:
            return []
        return epoch_intervals(items, ctx) if summary == "epochs" else daily_intervals(items, ctx)

    async def disconnect(self, token: dict[str, Any], user: str) -> None:
        await self.client.deregister(str(token["access_token"]))


def split_notification(body: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """A Garmin notification body as (user, notification id, queued payload) per user and summary
    type: a ping entry per callback URL, a push as the user's summaries of that type."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    for summary in SUMMARIES:
        entries = body.get(summary)
        if not isinstance(entries, list):
            continue
        pushed: dict[str, list[dict[str, Any]]] = {}
        for e in entries:
            if not isinstance(e, dict) or not e.get("userId"):
                continue
            user = str(e["userId"])
            if "callbackURL" in e:
                payload = {"kind": "ping", "summary": summary, "callbackURL": str(e["callbackURL"]),
                           "uploadEndTimeInSeconds": e.get("uploadEndTimeInSeconds")}
                out.append((user, _digest(payload), payload))
            else:
                pushed.setdefault(user, []).append(e)
        for user, items in pushed.items():
            payload = {"kind": "push", "summary": summary, "items": items}
            out.append((user, _digest(payload), payload))
    return out


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def notified_day(n: Notification) -> dt.date | None:
    return None  # notifications carry their data; gaps are found from the connection's progress


def adapters(http: httpx.AsyncClient, vcfg: VendorSettings, timeout_s: float) -> dict[str, GarminAdapter]:
    """The Garmin adapter when its OAuth client is configured (the gateway's registry)."""
    if not vcfg.garmin_client_id or vcfg.garmin_client_secret is None:
        return {}
    return {VENDOR: GarminAdapter(
        GarminClient(http, vcfg.garmin_api_base, timeout_s),
        provider(vcfg.garmin_client_id, vcfg.garmin_client_secret.get_secret_value(),
                 vcfg.garmin_authorize_url, vcfg.garmin_token_url),
        vcfg.garmin_steps_from,
    )}
