"""A local fake of the Oura API v2 and its OAuth endpoints (NOT Oura's service), from Oura's
published v2 description (see device_adapters.cloud.oura for what is assumed):

- OAuth: GET /oauth/authorize (the "logged-in" user consents at once), POST /oauth/token
  (client_secret_post, single-use codes bound to redirect_uri, access tokens that really expire,
  single-use refresh tokens rotated on every refresh, `invalid_grant` after revocation);
- GET /v2/usercollection/personal_info; GET /v2/usercollection/daily_activity with start_date and
  end_date (inclusive here) and next_token pages (`page_size` documents each, small on demand so
  tests page); each document's day starts at 4 a.m. local and its `steps` is the running total;
- 401 for unknown, expired or revoked tokens, 429 past a request budget (Retry-After only when
  `retry_after` is set), 500s on demand, 400 for a bad date range;
- webhook subscriptions with x-client-id/x-client-secret: POST (runs the GET challenge against the
  callback first, creates only when the challenge is echoed), GET, PUT renew; signed deliveries
  (x-oura-timestamp, x-oura-signature = HMAC-SHA256 of timestamp + body under the client secret).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
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

from device_adapters.cloud.oura import DAY_START, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

Deliver = Callable[[str, bytes, dict[str, str]], int]
Challenge = Callable[[str], tuple[int, bytes]]  # GET url -> (status, body)


def http_deliver(url: str, body: bytes, headers: dict[str, str]) -> int:
    return httpx.post(url, content=body, headers=headers, timeout=10.0).status_code


def http_challenge(url: str) -> tuple[int, bytes]:
    r = httpx.get(url, timeout=10.0)
    return r.status_code, r.content


@dataclass
class OuraFake:
    base_url: str = "http://127.0.0.1"
    client_id: str = "fake-oura-client"
    client_secret: str = "fake-oura-secret"
    deliver: Deliver = http_deliver
    challenge: Challenge = http_challenge
    token_lifetime_s: int = 86_400
    page_size: int = 50
    rate_budget: int | None = None
    retry_after: str | None = None
    fail_next: int = 0
    login_user: str = "oura-user-1"
    days: dict[tuple[str, date], tuple[int, str]] = field(default_factory=dict)  # (user, day) -> (steps, tz)
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    data_calls: list[tuple[str, str, str]] = field(default_factory=list)  # (user, start, end)
    calls: int = 0
    refreshes: int = 0
    _codes: dict[str, tuple[str, str]] = field(default_factory=dict)
    _pages: dict[str, tuple[str, str, str, int]] = field(default_factory=dict)

    # --- controls ---------------------------------------------------------------------------------
    def set_day(self, user: str, day: date, steps: int, tz: str) -> None:
        """The running total of Oura's day `day` (4 a.m. to 4 a.m. in `tz`): it replaces."""
        self.days[(user, day)] = (steps, tz)

    def revoke(self, user: str) -> None:
        self.revoked.add(user)
        for t in [t for t, (u, _) in self.tokens.items() if u == user]:
            del self.tokens[t]

    def consent(self, authorization_url: str, user: str | None = None) -> str:
        q = httpx.URL(authorization_url).params
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            raise ValueError("the authorization URL names another client or response type")
        code = secrets.token_urlsafe(16)
        who = self.login_user if user is None else user
        self.revoked.discard(who)
        self._codes[code] = (who, q.get("redirect_uri") or "")
        return f"{q.get('redirect_uri')}?{urlencode({'code': code, 'state': q.get('state') or ''})}"

    def document(self, user: str, day: date) -> dict[str, Any] | None:
        got = self.days.get((user, day))
        if got is None:
            return None
        steps, tz = got
        start = datetime.combine(day, DAY_START, ZoneInfo(tz))
        return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"oura:{user}:{day}")), "day": day.isoformat(),
                "steps": steps, "timestamp": start.isoformat(), "class_5_min": "", "score": None,
                "met": {"interval": 60.0, "items": [], "timestamp": start.isoformat()}}

    def delivery(self, user: str, day: date, event: str = "update", timestamp: str | None = None,
                 secret: str | None = None) -> tuple[bytes, dict[str, str]]:
        doc = self.document(user, day) or {"id": uuid.uuid4().hex}
        body = orjson.dumps({"event_type": event, "data_type": "daily_activity", "object_id": doc["id"],
                             "event_time": datetime.now(UTC).isoformat(), "user_id": user})
        ts = timestamp or str(int(time.time()))
        return body, {"Content-Type": "application/json", TIMESTAMP_HEADER: ts,
                      SIGNATURE_HEADER: sign((secret or self.client_secret).encode(), ts, body).upper()}

    def push(self, user: str, day: date, event: str = "update") -> int:
        hooks = [s for s in self.subscriptions if s["event_type"] == event and s["data_type"] == "daily_activity"]
        if not hooks:
            raise RuntimeError("no subscription for that event")
        body, headers = self.delivery(user, day, event)
        return self.deliver(hooks[0]["callback_url"], body, headers)

    # --- HTTP ---------------------------------------------------------------------------------------
    def _user(self, request: Request) -> str | None:
        got = self.tokens.get(request.headers.get("authorization", "").removeprefix("Bearer "))
        if got is None or got[1] < time.time() or got[0] in self.revoked:
            return None
        return got[0]

    def _guard(self, request: Request) -> tuple[str | None, Response | None]:
        self.calls += 1
        user = self._user(request)
        if user is None:
            return None, JSONResponse({"detail": "Invalid or expired token"}, status_code=401)
        if self.rate_budget is not None:
            if self.rate_budget <= 0:
                return None, JSONResponse({"detail": "Rate limit exceeded"}, status_code=429,
                                          headers={"Retry-After": self.retry_after} if self.retry_after else None)
            self.rate_budget -= 1
        if self.fail_next > 0:
            self.fail_next -= 1
            return None, JSONResponse({"detail": "Internal Server Error"}, status_code=500)
        return user, None

    async def _authorize(self, request: Request) -> Response:
        return RedirectResponse(self.consent(str(request.url)), status_code=302)

    async def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") == "authorization_code":
            got = self._codes.pop(form.get("code", ""), None)
            if got is None or got[1] != form.get("redirect_uri"):
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            user = got[0]
        elif form.get("grant_type") == "refresh_token":
            # Single use: the old refresh token dies with this answer.
            found = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if found is None or found in self.revoked:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            user = found
            self.refreshes += 1
        else:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.tokens[access] = (user, time.time() + self.token_lifetime_s)
        self.refresh_tokens[refresh] = user
        return JSONResponse({"access_token": access, "token_type": "bearer", "expires_in": self.token_lifetime_s,
                             "refresh_token": refresh})

    async def _personal(self, request: Request) -> Response:
        user, bad = self._guard(request)
        return bad or JSONResponse({"id": user, "age": 50, "email": None})

    async def _daily(self, request: Request) -> Response:
        user, bad = self._guard(request)
        if bad is not None or user is None:
            return bad or JSONResponse({}, status_code=401)
        q = request.query_params
        token = q.get("next_token")
        offset = 0
        if token:
            got = self._pages.pop(token, None)
            if got is None or got[:3] != (user, q.get("start_date", ""), q.get("end_date", "")):
                return JSONResponse({"detail": "invalid next_token"}, status_code=400)
            offset = got[3]
        try:
            first, last = date.fromisoformat(q["start_date"]), date.fromisoformat(q["end_date"])
        except (KeyError, ValueError):
            return JSONResponse({"detail": "start_date and end_date are YYYY-MM-DD"}, status_code=400)
        if last < first:
            return JSONResponse({"detail": "end_date before start_date"}, status_code=400)
        self.data_calls.append((user, q["start_date"], q["end_date"]))
        docs = [d for k in range((last - first).days + 1) if (d := self.document(user, first + timedelta(days=k)))]
        page = docs[offset:offset + self.page_size]
        nxt = None
        if offset + self.page_size < len(docs):
            nxt = secrets.token_urlsafe(12)
            self._pages[nxt] = (user, q["start_date"], q["end_date"], offset + self.page_size)
        return JSONResponse({"data": page, "next_token": nxt})

    def _app_ok(self, request: Request) -> bool:
        return (secrets.compare_digest(request.headers.get("x-client-id", ""), self.client_id)
                and secrets.compare_digest(request.headers.get("x-client-secret", ""), self.client_secret))

    async def _subscription(self, request: Request) -> Response:
        if not self._app_ok(request):
            return JSONResponse({"detail": "invalid client credentials"}, status_code=401)
        if request.method == "GET":
            return JSONResponse([{k: v for k, v in s.items() if k != "verification_token"} for s in self.subscriptions])
        body = orjson.loads(await request.body())
        challenge = secrets.token_urlsafe(16)
        sep = "&" if "?" in body["callback_url"] else "?"
        query = urlencode({"verification_token": body["verification_token"], "challenge": challenge})
        url = f"{body['callback_url']}{sep}{query}"
        status, answer = await asyncio.to_thread(self.challenge, url)
        try:
            echoed = orjson.loads(answer).get("challenge") if status == 200 else None
        except orjson.JSONDecodeError:
            echoed = None
        if echoed != challenge:
            return JSONResponse({"detail": f"callback verification failed ({status})"}, status_code=400)
        sub = {"id": str(uuid.uuid4()), "callback_url": body["callback_url"], "event_type": body["event_type"],
               "data_type": body["data_type"], "verification_token": body["verification_token"],
               "expiration_time": (datetime.now(UTC) + timedelta(days=90)).isoformat()}
        self.subscriptions.append(sub)
        return JSONResponse({k: v for k, v in sub.items() if k != "verification_token"}, status_code=201)

    async def _renew(self, request: Request) -> Response:
        if not self._app_ok(request):
            return JSONResponse({"detail": "invalid client credentials"}, status_code=401)
        for s in self.subscriptions:
            if s["id"] == request.path_params["sub_id"]:
                s["expiration_time"] = (datetime.now(UTC) + timedelta(days=90)).isoformat()
                return JSONResponse({k: v for k, v in s.items() if k != "verification_token"})
        return JSONResponse({"detail": "not found"}, status_code=404)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/oauth/authorize", self._authorize),
            Route("/oauth/token", self._token, methods=["POST"]),
            Route("/v2/usercollection/personal_info", self._personal),
            Route("/v2/usercollection/daily_activity", self._daily),
            Route("/v2/webhook/subscription", self._subscription, methods=["GET", "POST"]),
            Route("/v2/webhook/subscription/renew/{sub_id}", self._renew, methods=["PUT"]),
        ])
