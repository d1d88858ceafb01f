"""Oura API v2: OAuth, daily activity documents, webhook subscriptions (challenge handshake and
signed deliveries), mapped to canonical ActivityInterval events.

From Oura's published v2 description:
- GET /v2/usercollection/daily_activity?start_date=YYYY-MM-DD&end_date=YYYY-MM-DD[&next_token=]
  answers {"data": [{"id", "day", "steps", "timestamp", "class_5_min", "met", ...}],
  "next_token": str | null}: follow next_token until it is null.
- An Oura day starts at 4 a.m. local time: the document of `day` D covers D 04:00 to D+1 04:00,
  and its `timestamp` is that start with the user's offset. Its `steps` is a running total,
  rewritten while the day lasts (and a ring that syncs late rewrites past days).
- GET /v2/usercollection/personal_info answers the user's `id`.
- Webhooks: subscriptions are managed with the app's credentials in `x-client-id` and
  `x-client-secret` headers (POST/GET /v2/webhook/subscription, PUT .../renew/{id}); they expire
  (`expiration_time`) and must be renewed. On creation Oura sends a GET to the callback URL with
  `verification_token` (ours) and `challenge`; the answer is 200 {"challenge": challenge}.
  Deliveries are POSTs {"event_type", "data_type", "object_id", "event_time", "user_id"} with
  `x-oura-timestamp` and `x-oura-signature`, the HMAC-SHA256 of timestamp + body under the client
  secret. Rate limit: 429 past 5000 requests per 5 minutes.
Not public, and so read conservatively: the case of the signature's hex digits (compared
case-insensitively), the timestamp's format (unix seconds or ISO 8601 are both read), whether the
webhook's `user_id` is the personal_info `id` (assumed), and whether `end_date` is inclusive for
daily documents (we ask for one day more and keep the days we asked for).

Mapping: the document of day D becomes one interval from its 4 a.m. start to local midnight
after D, so all of Oura's day lands on the patient-local date D (the steps after midnight that
Oura counts in D are placed inside it; the document holds no finer step counts). Its event id
comes from the day, so a rewritten running total replaces the stored one, never adds to it.
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

ADAPTER = "oura-api-v2"
VENDOR = "oura"
SIGNATURE_HEADER = "x-oura-signature"
TIMESTAMP_HEADER = "x-oura-timestamp"
DAY_START = dt.time(4)  # Oura's day starts at 4 a.m. local
MAX_PAGES = 64


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(secret, timestamp.encode() + body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, timestamp: str | None, body: bytes, header: str | None) -> bool:
    if not header or not timestamp:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header.strip().lower())


def parse_timestamp(raw: str) -> datetime:
    """Unix seconds or ISO 8601 (which one Oura sends is not public)."""
    s = raw.strip()
    if s.isdigit():
        return datetime.fromtimestamp(int(s), UTC)
    t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def notification_id(timestamp: str, body: bytes) -> str:
    """The signed content is the identity: a later update of the same document differs in time."""
    return hashlib.sha256(timestamp.encode() + b"\n" + body).hexdigest()


class WebhookPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    event_type: Annotated[str, Field(max_length=32)]
    data_type: Annotated[str, Field(max_length=64)]
    object_id: Annotated[str, Field(max_length=128)] | None = None
    event_time: datetime | None = None
    user_id: Annotated[str, Field(max_length=128)] | None = None


class DailyActivity(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: Annotated[str, Field(max_length=128)]
    day: dt.date
    steps: Annotated[int, Field(ge=0)]
    timestamp: datetime | None = None


class DailyActivityPage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: list[DailyActivity] = Field(default_factory=list)
    next_token: str | None = None


def day_intervals(
    docs: list[DailyActivity], tz: str, ctx: DeviceContext, now: datetime
) -> list[ActivityInterval]:
    """One interval per Oura day: [its 4 a.m. start, local midnight after it), cut at `now` for a
    day still running. The zone is the patient's for that day (the caller's `tz`)."""
    zone = ZoneInfo(tz)
    provenance = Provenance(adapter=ADAPTER, vendor=VENDOR, device_id=ctx.device_id)
    out: list[ActivityInterval] = []
    for d in docs:
        start = d.timestamp if d.timestamp is not None and d.timestamp.tzinfo else \
            datetime.combine(d.day, DAY_START, zone)
        start = start.astimezone(UTC)
        end = min(datetime.combine(d.day + timedelta(days=1), dt.time(), zone).astimezone(UTC),
                  now.astimezone(UTC).replace(second=0, microsecond=0))
        if end <= start:  # a document of a day that has not begun here: nothing to place yet
            continue
        offset = start.astimezone(zone).utcoffset()
        append_valid(
            out, VENDOR, patient_id=ctx.patient_id, episode_id=ctx.episode_id, provenance=provenance,
            source="vendor_cloud", source_record_id=f"oura-daily-activity:{d.day.isoformat()}",
            start=start, end=end, steps=d.steps,
            zone_offset_s=None if offset is None else int(offset.total_seconds()),
        )
    return out


class OuraClient(VendorHttp):
    label = "Oura"

    def __init__(
        self, http: httpx.AsyncClient, base_url: str, timeout_s: float,
        client_id: str | None = None, client_secret: str | None = None,
    ) -> None:
        super().__init__(http, base_url, timeout_s)
        self.client_id = client_id
        self.client_secret = client_secret

    async def _call(self, method: str, path: str, what: str, headers: dict[str, str], **kw: Any) -> Any:
        resp = await self.send(method, f"{self.base_url}{path}", what,
                               headers={"Accept": "application/json", **headers}, **kw)
        raise_for_vendor(resp, f"Oura {what}")
        if resp.status_code == 204 or not resp.content:
            return None
        return self.json_of(resp, what)

    def _app(self) -> dict[str, str]:
        if not self.client_id or not self.client_secret:
            raise RuntimeError("RTM_VENDOR_OURA_CLIENT_ID and _SECRET are needed for webhook subscriptions")
        return {"x-client-id": self.client_id, "x-client-secret": self.client_secret}

    async def personal_id(self, token: str) -> str:
        body = await self._call("GET", "/v2/usercollection/personal_info", "personal info",
                                {"Authorization": f"Bearer {token}"})
        if not body or not body.get("id"):
            raise VendorUnavailable("Oura personal info: no id in the answer")
        return str(body["id"])

    async def daily_activity(self, token: str, first: dt.date, last: dt.date) -> list[DailyActivity]:
        """Documents of days first..last, following next_token."""
        docs: list[DailyActivity] = []
        params = {"start_date": first.isoformat(), "end_date": (last + timedelta(days=1)).isoformat()}
        for _ in range(MAX_PAGES):
            body = await self._call("GET", "/v2/usercollection/daily_activity", "daily activity",
                                    {"Authorization": f"Bearer {token}"}, params=params)
            try:
                page = DailyActivityPage.model_validate(body or {})
            except ValueError as exc:
                raise VendorUnavailable(f"Oura daily activity: unexpected body ({exc.__class__.__name__})") from None
            docs.extend(d for d in page.data if first <= d.day <= last)
            if not page.next_token:
                return docs
            params = {**params, "next_token": page.next_token}
        raise VendorUnavailable("Oura daily activity: the pages do not end")

    async def ensure_subscriptions(
        self, callback_url: str, verification_token: str, data_type: str = "daily_activity",
        event_types: tuple[str, ...] = ("create", "update"), renew_within: timedelta = timedelta(days=7),
    ) -> list[str]:
        """One subscription per event type for `callback_url`; created (Oura runs the challenge
        first) or renewed when it expires within `renew_within`. Returns what was done."""
        hooks = await self._call("GET", "/v2/webhook/subscription", "subscription list", self._app()) or []
        done: list[str] = []
        now = datetime.now(UTC)
        for event in event_types:
            mine = [h for h in hooks if h.get("callback_url") == callback_url and h.get("event_type") == event
                    and h.get("data_type") == data_type]
            if not mine:
                await self._call("POST", "/v2/webhook/subscription", "subscription creation (did the gateway "
                                 "answer the challenge?)", self._app(),
                                 json={"callback_url": callback_url, "verification_token": verification_token,
                                       "event_type": event, "data_type": data_type})
                done.append(f"created {event}")
                continue
            expires = datetime.fromisoformat(str(mine[0]["expiration_time"]).replace("Z", "+00:00"))
            if expires - now < renew_within:
                await self._call("PUT", f"/v2/webhook/subscription/renew/{mine[0]['id']}", "subscription renewal",
                                 self._app())
                done.append(f"renewed {event}")
        return done


def provider(client_id: str, client_secret: str, authorize_url: str, token_url: str) -> OAuthProvider:
    # Oura's OAuth documents no PKCE; its refresh tokens are single use (rotated on refresh).
    return OAuthProvider(
        vendor=VENDOR, client_id=client_id, client_secret=client_secret, authorize_url=authorize_url,
        token_url=token_url, scope="daily", pkce=False, token_auth="client_secret_post",
    )


class OuraAdapter:
    """Oura as the gateway's vendor syncer sees it (ingest.vendor_sync.CloudAdapter)."""

    vendor = VENDOR

    def __init__(self, client: OuraClient, oauth_provider: OAuthProvider | None, revision_days: int) -> None:
        self.client = client
        self.oauth_provider = oauth_provider
        self.revision_days = revision_days

    def provider(self) -> OAuthProvider | None:
        return self.oauth_provider

    async def account(self, token: dict[str, Any], member_id: str) -> str:
        return await self.client.personal_id(str(token["access_token"]))

    async def fetch_day(
        self, token: dict[str, Any], day: dt.date, tz: str, ctx: DeviceContext, complete: bool
    ) -> list[ActivityInterval]:
        # Today re-reads the last days too: yesterday's Oura day runs on to 4 a.m. today, and a
        # ring that syncs late rewrites earlier days (their totals replace, never add). The zone is
        # today's for those days too: a move within the last days shifts their cut by the zone change.
        first = day if complete else day - timedelta(days=self.revision_days)
        docs = await self.client.daily_activity(str(token["access_token"]), first, day)
        return day_intervals(docs, tz, ctx, datetime.now(UTC))
