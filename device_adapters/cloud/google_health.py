"""Google Health API v4 (the successor of the Fitbit Web API): OAuth, the steps data points, the
daily roll-up, subscriber (webhook) verification and notifications, mapped to canonical
per-interval ActivityInterval events.

From Google's published v4 reference:
- Steps are an *interval* data type stored at 1-minute resolution:
  GET /v4/users/me/dataTypes/steps/dataPoints?filter=...&pageSize=...&pageToken=... answers
  {"dataPoints": [{"name": ..., "steps": {"interval": {"startTime", "startUtcOffset", "endTime",
  "endUtcOffset", "civilStartTime", "civilEndTime"}, "count": ...}}], "nextPageToken": ...};
  at most 1440 points per page unless pageSize says otherwise (max 10000). The filter takes
  `steps.interval.start_time >= "RFC3339" AND steps.interval.start_time < "RFC3339"` (physical
  time) or `steps.interval.civil_start_time` (the user's civil time).
  `count` is an int64, which proto3's JSON mapping writes as a string; offsets are Durations
  ("-18000s"). Both forms (string and number) are read.
- POST /v4/users/me/dataTypes/steps/dataPoints:dailyRollUp rolls up over *civil* days of the
  user's clock (Google reconciles overlapping sources and off-wrist periods there). We use it
  only to check a day: the per-minute points are what is stored (rule: batches of intervals).
- Subscribers: when a subscriber is created, Google POSTs {"type": "verification"} twice to the
  endpoint, once with `Authorization` equal to the configured secret (must answer 201) and once
  without it (must answer 401 or 403); every notification carries the same `Authorization`.
  Notifications are also signed (`X-HEALTHAPI-SIGNATURE`, ECDSA P-256 with Google's public key);
  the encoding of that signature and where the key is published are not in the reference we
  could read, so it is not checked here: the shared secret is.
- Quota: 300 requests per minute per user; a 429 is RESOURCE_EXHAUSTED.
Not public (or not found), and so read conservatively: the exact shape of a data-change
notification body (we read the user id, data type, the changed interval and a publish time,
and treat the body's digest as its identity), whether a 429 carries Retry-After (honoured when
present, else one minute), and the path of the identity call (`users/me/identity`, named after
the reference's GetIdentity).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from device_adapters.cloud.documents import append_valid
from device_adapters.cloud.errors import VendorUnavailable, raise_for_vendor
from device_adapters.cloud.http import VendorHttp
from device_adapters.cloud.oauth import OAuthProvider
from device_adapters.context import DeviceContext
from rtm.contract import ActivityInterval, Provenance

ADAPTER = "google-health-api-v4"
VENDOR = "google-health"
SCOPE = "https://www.googleapis.com/auth/googlehealth.activity_and_fitness.readonly"
PAGE_SIZE = 1440  # Google's default page: one day of minutes
MAX_PAGES = 64  # a day of 1-minute points is 1440; more pages than this is a looping token


def _duration_s(v: Any) -> int | None:
    """A protobuf Duration in JSON ("-18000s", "3600.5s") or a number of seconds."""
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return int(v)
    s = str(v).strip().removesuffix("s")
    try:
        return int(float(s))
    except ValueError:
        raise ValueError(f"not a duration: {v!r}") from None


class Interval(BaseModel):
    model_config = ConfigDict(extra="ignore")
    startTime: datetime
    endTime: datetime
    startUtcOffset: int | None = None
    endUtcOffset: int | None = None

    @field_validator("startUtcOffset", "endUtcOffset", mode="before")
    @classmethod
    def _offset(cls, v: Any) -> int | None:
        return _duration_s(v)


class Steps(BaseModel):
    model_config = ConfigDict(extra="ignore")
    interval: Interval
    count: Annotated[int, Field(ge=0)]  # int64: a JSON string on the wire


class DataPoint(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: Annotated[str, Field(max_length=512)] | None = None
    steps: Steps | None = None


class DataPointsPage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    dataPoints: list[DataPoint] = Field(default_factory=list)
    nextPageToken: str | None = None


class Notification(BaseModel):
    """A data-change notification (shape assumed, see the module's docstring)."""

    model_config = ConfigDict(extra="ignore")
    type: Annotated[str, Field(max_length=64)] | None = None
    healthUserId: Annotated[str, Field(max_length=128)] | None = None
    dataType: Annotated[str, Field(max_length=64)] | None = None
    interval: Interval | None = None
    publishTime: datetime | None = None


def authorized(secret: bytes, header: str | None) -> bool:
    """The subscriber secret, compared in constant time."""
    return header is not None and hmac.compare_digest(header.encode(), secret)


def notification_id(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def day_filter(start: datetime, end: datetime) -> str:
    def z(t: datetime) -> str:
        return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    return f'steps.interval.start_time >= "{z(start)}" AND steps.interval.start_time < "{z(end)}"'


def step_intervals(points: list[DataPoint], ctx: DeviceContext) -> list[ActivityInterval]:
    """One interval per data point, in physical time (UTC instants; Google's offset kept): a DST
    day or a zone change needs no arithmetic on civil times here."""
    provenance = Provenance(adapter=ADAPTER, vendor="google", device_id=ctx.device_id)
    out: list[ActivityInterval] = []
    for p in points:
        if p.steps is None:
            continue
        iv = p.steps.interval
        append_valid(
            out, VENDOR, patient_id=ctx.patient_id, episode_id=ctx.episode_id, provenance=provenance,
            source="vendor_cloud", start=iv.startTime.astimezone(UTC), end=iv.endTime.astimezone(UTC),
            steps=p.steps.count, zone_offset_s=iv.startUtcOffset,
        )
    return out


class GoogleHealthClient(VendorHttp):
    label = "Google Health"

    async def _call(self, method: str, path: str, what: str, token: str, **kw: Any) -> Any:
        resp = await self.send(method, f"{self.base_url}{path}", what,
                               headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}, **kw)
        raise_for_vendor(resp, f"Google Health {what}")
        return self.json_of(resp, what)

    async def identity(self, token: str) -> str:
        body = await self._call("GET", "/v4/users/me/identity", "identity", token)
        user = (body or {}).get("healthUserId")
        if not user:
            raise VendorUnavailable("Google Health identity: no healthUserId in the answer")
        return str(user)

    async def steps(self, token: str, start: datetime, end: datetime) -> list[DataPoint]:
        """Every steps data point starting in [start, end), following nextPageToken."""
        points: list[DataPoint] = []
        page_token: str | None = None
        for _ in range(MAX_PAGES):
            params = {"filter": day_filter(start, end), "pageSize": str(PAGE_SIZE)}
            if page_token:
                params["pageToken"] = page_token
            body = await self._call("GET", "/v4/users/me/dataTypes/steps/dataPoints", "steps list", token,
                                    params=params)
            try:
                page = DataPointsPage.model_validate(body)
            except ValueError as exc:
                raise VendorUnavailable(f"Google Health steps list: unexpected body ({type(exc).__name__})") from None
            points.extend(page.dataPoints)
            page_token = page.nextPageToken
            if not page_token:
                return points
        raise VendorUnavailable("Google Health steps list: the pages do not end")

    async def daily_steps(self, token: str, day: dt.date) -> int:
        """The civil day's total as Google rolls it up (used to check what was stored)."""
        civil = {"date": {"year": day.year, "month": day.month, "day": day.day}}
        body = await self._call(
            "POST", "/v4/users/me/dataTypes/steps/dataPoints:dailyRollUp", "daily roll-up", token,
            json={"range": {"start": civil, "end": civil}, "windowSizeDays": 1},
        )
        points = (body or {}).get("rollupDataPoints") or []
        return sum(int((p.get("steps") or {}).get("countSum") or 0) for p in points)


def provider(client_id: str, client_secret: str, authorize_url: str, token_url: str) -> OAuthProvider:
    # Google gives a refresh token only with access_type=offline (and again only on prompt=consent).
    return OAuthProvider(
        vendor=VENDOR, client_id=client_id, client_secret=client_secret, authorize_url=authorize_url,
        token_url=token_url, scope=SCOPE, pkce=True, token_auth="client_secret_post",
        auth_params=(("access_type", "offline"), ("prompt", "consent")),
    )


def day_window(day: dt.date, tz: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(tz)
    return (datetime.combine(day, dt.time(), zone).astimezone(UTC),
            datetime.combine(day + timedelta(days=1), dt.time(), zone).astimezone(UTC))


class GoogleHealthAdapter:
    """Google Health as the gateway's vendor syncer sees it (ingest.vendor_sync.CloudAdapter)."""

    vendor = VENDOR

    def __init__(self, client: GoogleHealthClient, oauth_provider: OAuthProvider | None, revision_days: int) -> None:
        self.client = client
        self.oauth_provider = oauth_provider
        self.revision_days = revision_days

    def provider(self) -> OAuthProvider | None:
        return self.oauth_provider

    async def account(self, token: dict[str, Any], member_id: str) -> str:
        return await self.client.identity(str(token["access_token"]))

    async def fetch_day(
        self, token: dict[str, Any], day: dt.date, tz: str, ctx: DeviceContext, complete: bool
    ) -> list[ActivityInterval]:
        # Today also re-reads the days a tracker may still fill in (it syncs late): their points
        # come back with the same start, so the same event ids, and replace what was stored.
        first = day if complete else day - timedelta(days=self.revision_days)
        start, _ = day_window(first, tz)
        _, end = day_window(day, tz)
        return step_intervals(await self.client.steps(str(token["access_token"]), start, end), ctx)
