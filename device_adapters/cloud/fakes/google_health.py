"""A local fake of the Google Health API v4 and Google's OAuth endpoints (NOT Google's service),
from the published v4 reference (see device_adapters.cloud.google_health for what is assumed):

- OAuth: GET /o/oauth2/v2/auth (the "logged-in" user consents at once; a refresh token only with
  access_type=offline), POST /token (client_secret_post, PKCE S256 checked, single-use codes
  bound to their redirect_uri, short-lived access tokens that really expire, refresh tokens that
  Google does not rotate, `invalid_grant` once the user revoked access);
- GET /v4/users/me/identity -> {"healthUserId"};
- GET /v4/users/me/dataTypes/steps/dataPoints with the start_time filter, pageSize (default 1440,
  at most 10000) and opaque page tokens; counts as int64 strings, offsets as Durations;
- POST /v4/users/me/dataTypes/steps/dataPoints:dailyRollUp over civil days;
- 401 UNAUTHENTICATED for unknown, expired or revoked tokens, 429 RESOURCE_EXHAUSTED past 300
  requests per minute per user (Retry-After only when `retry_after` is set), 500s on demand;
- POST /v4/projects/{project}/subscribers: the two verification POSTs (with the secret -> 201,
  without -> 401/403) before the subscriber exists; notifications with the secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

Deliver = Callable[[str, bytes, dict[str, str]], int]
PER_USER_PER_MIN = 300  # Google's documented per-user quota


def http_deliver(url: str, body: bytes, headers: dict[str, str]) -> int:
    return httpx.post(url, content=body, headers=headers, timeout=10.0).status_code


def _z(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _err(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "status": code, "message": message}}, status_code=status,
                        headers=headers)


@dataclass
class Point:
    start: datetime  # UTC
    minutes: int
    offset_s: int
    count: int


@dataclass
class GoogleHealthFake:
    base_url: str = "http://127.0.0.1"
    client_id: str = "fake-google-client.apps.example"
    client_secret: str = "fake-google-secret"
    deliver: Deliver = http_deliver
    token_lifetime_s: int = 3599
    per_user_per_min: int = PER_USER_PER_MIN
    retry_after: str | None = None
    fail_next: int = 0
    page_cap: int = 10_000
    login_user: str = "111"
    points: dict[str, dict[datetime, Point]] = field(default_factory=dict)  # user -> start -> point
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # access -> (user, expires)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh -> user
    revoked: set[str] = field(default_factory=set)
    data_calls: list[tuple[str, str]] = field(default_factory=list)  # (user, filter)
    calls: int = 0
    refreshes: int = 0
    subscriber: dict[str, str] | None = None
    _codes: dict[str, tuple[str, str, str | None, bool]] = field(default_factory=dict)
    _window: dict[str, deque[float]] = field(default_factory=dict)
    _pages: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # token -> (user, filter, offset)

    # --- controls ---------------------------------------------------------------------------------
    def add_minutes(self, user: str, tz: str, day: date, start_hour: int, counts: list[int]) -> None:
        """Minute points from local `start_hour` of `day` in `tz` (absolute minutes, DST-correct);
        a point at the same start replaces the earlier one (Google rewrites, never duplicates)."""
        zone = ZoneInfo(tz)
        t0 = datetime.combine(day, datetime.min.time(), zone).replace(hour=start_hour).astimezone(UTC)
        store = self.points.setdefault(user, {})
        for k, c in enumerate(counts):
            t = t0 + timedelta(minutes=k)
            off = t.astimezone(zone).utcoffset()
            store[t] = Point(t, 1, int(off.total_seconds()) if off else 0, c)

    def revoke(self, user: str) -> None:
        """The user removed the app's access in their Google account."""
        self.revoked.add(user)
        for t in [t for t, (u, _) in self.tokens.items() if u == user]:
            del self.tokens[t]

    def consent(self, authorization_url: str, user: str | None = None) -> str:
        url = httpx.URL(authorization_url)
        q = url.params
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            raise ValueError("the authorization URL names another client or response type")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            raise ValueError("Google requires PKCE for this client (fake's policy)")
        code = secrets.token_urlsafe(16)
        who = self.login_user if user is None else user
        self.revoked.discard(who)
        self._codes[code] = (who, q.get("redirect_uri") or "", q.get("code_challenge"),
                             q.get("access_type") == "offline")
        return f"{q.get('redirect_uri')}?{urlencode({'code': code, 'state': q.get('state') or ''})}"

    def notification(
        self, user: str, start: datetime, end: datetime, secret: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        body = orjson.dumps({
            "type": "notification", "healthUserId": user, "dataType": "steps", "operation": "UPSERT",
            "interval": {"startTime": _z(start), "endTime": _z(end)},
            "publishTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "id": uuid.uuid4().hex,
        })
        key = secret if secret is not None else (self.subscriber or {}).get("secret", "")
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = key
        return body, headers

    def push(self, user: str, start: datetime, end: datetime) -> int:
        if self.subscriber is None:
            raise RuntimeError("no subscriber")
        body, headers = self.notification(user, start, end)
        return self.deliver(self.subscriber["endpointUri"], body, headers)

    # --- HTTP ---------------------------------------------------------------------------------------
    def _user(self, request: Request) -> str | None:
        got = self.tokens.get(request.headers.get("authorization", "").removeprefix("Bearer "))
        if got is None or got[1] < time.time() or got[0] in self.revoked:
            return None
        return got[0]

    def _limited(self, user: str) -> Response | None:
        now = time.monotonic()
        w = self._window.setdefault(user, deque())
        while w and now - w[0] > 60.0:
            w.popleft()
        if len(w) >= self.per_user_per_min:
            return _err(429, "RESOURCE_EXHAUSTED", "Quota exceeded: requests per minute per user",
                        {"Retry-After": self.retry_after} if self.retry_after else None)
        w.append(now)
        return None

    def _guard(self, request: Request) -> tuple[str | None, Response | None]:
        self.calls += 1
        user = self._user(request)
        if user is None:
            return None, _err(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        limited = self._limited(user)
        if limited is not None:
            return None, limited
        if self.fail_next > 0:
            self.fail_next -= 1
            return None, _err(500, "INTERNAL", "Internal error encountered.")
        return user, None

    async def _authorize(self, request: Request) -> Response:
        return RedirectResponse(self.consent(str(request.url)), status_code=302)

    async def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        refresh: str | None = None
        if form.get("grant_type") == "authorization_code":
            got = self._codes.pop(form.get("code", ""), None)
            if got is None or got[1] != form.get("redirect_uri"):
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            digest = base64.urlsafe_b64encode(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
            if digest.rstrip(b"=").decode() != got[2]:
                return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, status_code=400)
            user = got[0]
            if got[3]:
                refresh = secrets.token_urlsafe(24)
                self.refresh_tokens[refresh] = user
        elif form.get("grant_type") == "refresh_token":
            user_or_none = self.refresh_tokens.get(form.get("refresh_token", ""))
            if user_or_none is None or user_or_none in self.revoked:
                return JSONResponse({"error": "invalid_grant", "error_description": "expired or revoked"},
                                    status_code=400)
            user = user_or_none
            self.refreshes += 1
        else:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        access = secrets.token_urlsafe(24)
        self.tokens[access] = (user, time.time() + self.token_lifetime_s)
        answer: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": self.token_lifetime_s,
                                  "scope": "https://www.googleapis.com/auth/googlehealth.activity_and_fitness.readonly"}
        if refresh:
            answer["refresh_token"] = refresh
        return JSONResponse(answer)

    async def _identity(self, request: Request) -> Response:
        user, bad = self._guard(request)
        return bad or JSONResponse({"name": "users/me/identity", "healthUserId": user})

    @staticmethod
    def _parse_filter(f: str) -> tuple[datetime, datetime]:
        lo = hi = None
        for part in f.split(" AND "):
            field_, op, value = part.strip().split(" ", 2)
            if field_ != "steps.interval.start_time":
                raise ValueError(field_)
            t = datetime.fromisoformat(value.strip('"').replace("Z", "+00:00"))
            if op == ">=":
                lo = t
            elif op == "<":
                hi = t
            else:
                raise ValueError(op)
        if lo is None or hi is None:
            raise ValueError("both bounds")
        return lo, hi

    async def _list(self, request: Request) -> Response:
        user, bad = self._guard(request)
        if bad is not None or user is None:
            return bad or _err(401, "UNAUTHENTICATED", "")
        q = request.query_params
        page_token = q.get("pageToken")
        if page_token:
            got = self._pages.pop(page_token, None)
            if got is None or got[0] != user or got[1] != q.get("filter", ""):
                return _err(400, "INVALID_ARGUMENT", "Invalid page token.")
            offset = got[2]
        else:
            offset = 0
        try:
            lo, hi = self._parse_filter(q.get("filter", ""))
            size = min(int(q.get("pageSize", "1440")), 10_000, self.page_cap)
        except ValueError:
            return _err(400, "INVALID_ARGUMENT", "Invalid filter or page size.")
        self.data_calls.append((user, q.get("filter", "")))
        pts = sorted((p for p in self.points.get(user, {}).values() if lo <= p.start < hi), key=lambda p: p.start)
        page = pts[offset:offset + size]
        body: dict[str, Any] = {"dataPoints": [{
            "name": f"users/{user}/dataTypes/steps/dataPoints/{p.start.timestamp():.0f}",
            "dataSource": {"recordingMethod": "PASSIVELY_MEASURED", "platform": "FITBIT"},
            "steps": {"interval": {
                "startTime": _z(p.start), "startUtcOffset": f"{p.offset_s}s",
                "endTime": _z(p.start + timedelta(minutes=p.minutes)), "endUtcOffset": f"{p.offset_s}s"},
                "count": str(p.count)}} for p in page]}
        if offset + size < len(pts):
            token = secrets.token_urlsafe(12)
            self._pages[token] = (user, q.get("filter", ""), offset + size)
            body["nextPageToken"] = token
        return JSONResponse(body)

    async def _daily(self, request: Request) -> Response:
        user, bad = self._guard(request)
        if bad is not None or user is None:
            return bad or _err(401, "UNAUTHENTICATED", "")
        body = orjson.loads(await request.body())
        s, e = body["range"]["start"]["date"], body["range"]["end"]["date"]
        first, last = date(s["year"], s["month"], s["day"]), date(e["year"], e["month"], e["day"])
        sums: dict[date, int] = {}
        for p in self.points.get(user, {}).values():
            civil = (p.start + timedelta(seconds=p.offset_s)).date()
            if first <= civil <= last:
                sums[civil] = sums.get(civil, 0) + p.count
        return JSONResponse({"rollupDataPoints": [
            {"civilStartTime": {"date": {"year": d.year, "month": d.month, "day": d.day}},
             "steps": {"countSum": str(n)}} for d, n in sorted(sums.items())]})

    async def _subscribers(self, request: Request) -> Response:
        # Managed with the project's own credentials (a service account); the fake only checks
        # that some bearer is present.
        if not request.headers.get("authorization"):
            return _err(401, "UNAUTHENTICATED", "")
        body = orjson.loads(await request.body())
        uri, secret = body.get("endpointUri", ""), (body.get("endpointAuthorization") or {}).get("secret", "")
        probe = orjson.dumps({"type": "verification"})
        with_auth = await asyncio.to_thread(self.deliver, uri, probe,
                                            {"Content-Type": "application/json", "Authorization": secret})
        without = await asyncio.to_thread(self.deliver, uri, probe, {"Content-Type": "application/json"})
        if with_auth != 201 or without not in (401, 403):
            return _err(400, "FAILED_PRECONDITION",
                        f"endpoint verification failed: {with_auth} with the secret, {without} without")
        self.subscriber = {"endpointUri": uri, "secret": secret,
                           "name": f"projects/{request.path_params['project']}/subscribers/{uuid.uuid4().hex[:8]}"}
        return JSONResponse({"name": "operations/fake", "done": True,
                             "response": {"name": self.subscriber["name"], "endpointUri": uri}})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/o/oauth2/v2/auth", self._authorize),
            Route("/token", self._token, methods=["POST"]),
            Route("/v4/users/me/identity", self._identity),
            Route("/v4/users/me/dataTypes/steps/dataPoints", self._list),
            Route("/v4/users/me/dataTypes/steps/dataPoints:dailyRollUp", self._daily, methods=["POST"]),
            Route("/v4/projects/{project}/subscribers", self._subscribers, methods=["POST"]),
        ])
