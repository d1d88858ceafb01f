"""A local fake of the Garmin Health API (NOT Garmin's service), after the public summaries of it
(see device_adapters/cloud/garmin.py for what is public and what is assumed):

- OAuth 2.0 with PKCE: GET /oauth2Confirm (the "logged-in" user consents at once; S256
  challenge required), POST /di-oauth2-service/oauth/token (client credentials in the form,
  single-use codes bound to redirect_uri and verifier; 24-hour access tokens; refresh tokens
  rotate, the old one answers invalid_grant);
- GET /wellness-api/rest/user/id, DELETE /wellness-api/rest/user/registration;
- data keyed by upload time: GET /wellness-api/rest/{epochs|dailies}?uploadStartTimeInSeconds=
  &uploadEndTimeInSeconds=&token= (a ping's callback; at most 24 h; the same range twice: 409);
- GET /wellness-api/rest/backfill/{summary}?summaryStartTimeInSeconds=&summaryEndTimeInSeconds=
  (202, then the summaries are pinged or pushed again; a range overlapping an earlier request:
  409; more than 90 days: 400);
- 429 with Retry-After past the budget; unsigned ping or push deliveries to the configured URL.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import orjson
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

Deliver = Callable[[str, bytes, dict[str, str]], int]
PULL_MAX_S = 24 * 3600
BACKFILL_MAX_S = 90 * 24 * 3600


def http_deliver(url: str, body: bytes, headers: dict[str, str]) -> int:
    return httpx.post(url, content=body, headers=headers, timeout=10.0).status_code


@dataclass
class Upload:
    user: str
    summary: str
    at: int  # upload time, unix seconds
    item: dict[str, Any]


@dataclass
class GarminFake:
    base_url: str = "http://127.0.0.1"
    client_id: str = "fake-garmin-client"
    client_secret: str = "fake-garmin-secret"
    endpoint: str = ""  # the notification URL configured at Garmin (ping/push)
    mode: str = "ping"  # or "push"
    deliver: Deliver = http_deliver
    token_lifetime_s: int = 86_400
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)
    pulled: set[tuple[str, str, int, int]] = field(default_factory=set)
    backfills: dict[str, list[tuple[str, int, int]]] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    rate_budget: int | None = None
    retry_after_s: int = 1
    calls: int = 0
    refreshes: int = 0
    _clock: int = 0
    _codes: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # code -> (user, redirect, challenge)
    _pull_tokens: dict[str, str] = field(default_factory=dict)  # pull token -> user
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- test and demo controls -----------------------------------------------------------------
    def _tick(self) -> int:
        with self._lock:
            self._clock = max(int(time.time()), self._clock + 1)  # distinct upload ranges
            return self._clock

    def upload(self, user: str, summary: str, items: list[dict[str, Any]]) -> int:
        """The user's device synced: summaries stored under one upload time (returned)."""
        at = self._tick()
        for item in items:
            self.uploads.append(Upload(user, summary, at, {**item, "userId": user}))
        return at

    def notify(self, user: str, summary: str, at: int) -> int:
        """Ping (or push) the upload made at `at` to the configured endpoint; the status got."""
        items = [u.item for u in self.uploads if u.user == user and u.summary == summary and u.at == at]
        if self.mode == "push":
            body = orjson.dumps({summary: items})
        else:
            body = orjson.dumps({summary: [self.ping_entry(user, summary, at, at + 1)]})
        return self.deliver(self.endpoint, body, {"Content-Type": "application/json"})

    def ping_entry(self, user: str, summary: str, start: int, end: int) -> dict[str, Any]:
        pull = secrets.token_urlsafe(12)
        self._pull_tokens[pull] = user
        q = urlencode({"uploadStartTimeInSeconds": start, "uploadEndTimeInSeconds": end, "token": pull})
        return {"userId": user, "uploadStartTimeInSeconds": start, "uploadEndTimeInSeconds": end,
                "callbackURL": f"{self.base_url}/wellness-api/rest/{summary}?{q}"}

    def revoke(self, user: str) -> None:
        """The user removed the app's access in Garmin Connect."""
        self.revoked.add(user)
        for t in [t for t, (u, _) in self.tokens.items() if u == user]:
            del self.tokens[t]
        for t in [t for t, u in self.refresh_tokens.items() if u == user]:
            del self.refresh_tokens[t]

    def consent(self, authorization_url: str, user: str) -> str:
        q = httpx.URL(authorization_url).params
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            raise ValueError("the authorization URL names another client or response type")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            raise ValueError("Garmin requires a PKCE S256 challenge")
        code = secrets.token_urlsafe(16)
        self._codes[code] = (user, q.get("redirect_uri") or "", q.get("code_challenge") or "")
        self.revoked.discard(user)
        return f"{q.get('redirect_uri')}?{urlencode({'code': code, 'state': q.get('state') or ''})}"

    # --- HTTP -------------------------------------------------------------------------------------
    def _user(self, request: Request) -> str | None:
        got = self.tokens.get(request.headers.get("authorization", "").removeprefix("Bearer "))
        return None if got is None or got[1] < time.time() else got[0]

    def _limited(self) -> Response | None:
        self.calls += 1
        if self.rate_budget is None:
            return None
        if self.rate_budget <= 0:
            return JSONResponse({"errorMessage": "rate limit exceeded"}, status_code=429,
                                headers={"Retry-After": str(self.retry_after_s)})
        self.rate_budget -= 1
        return None

    def _issue(self, user: str) -> JSONResponse:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.tokens[access] = (user, time.time() + self.token_lifetime_s)
        self.refresh_tokens[refresh] = user
        return JSONResponse({"access_token": access, "token_type": "bearer", "refresh_token": refresh,
                             "expires_in": self.token_lifetime_s, "scope": "HEALTH_EXPORT",
                             "jti": secrets.token_hex(8), "refresh_token_expires_in": 7_776_000})

    async def _authorize(self, request: Request) -> Response:
        return RedirectResponse(self.consent(str(request.url), "garmin-user"), status_code=302)

    async def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") == "authorization_code":
            got = self._codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if got is None or got[1] != form.get("redirect_uri") or got[2] != challenge:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            return self._issue(got[0])
        if form.get("grant_type") == "refresh_token":
            user = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if user is None:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            self.refreshes += 1
            return self._issue(user)
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)

    async def _user_id(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return JSONResponse({"errorMessage": "unauthorized"}, status_code=401)
        return JSONResponse({"userId": user})

    async def _deregister(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return JSONResponse({"errorMessage": "unauthorized"}, status_code=401)
        self.revoke(user)
        return Response(status_code=204)

    async def _pull(self, request: Request) -> Response:
        if (limited := self._limited()) is not None:
            return limited
        user = self._user(request)
        summary = request.path_params["summary"]
        q = request.query_params
        if user is None or self._pull_tokens.get(q.get("token", "")) != user:
            return JSONResponse({"errorMessage": "unauthorized"}, status_code=401)
        try:
            a, b = int(q["uploadStartTimeInSeconds"]), int(q["uploadEndTimeInSeconds"])
        except (KeyError, ValueError):
            return JSONResponse({"errorMessage": "upload time range required"}, status_code=400)
        if not 0 < b - a <= PULL_MAX_S:
            return JSONResponse({"errorMessage": "range must be 1 s to 24 h"}, status_code=400)
        if (user, summary, a, b) in self.pulled:
            return JSONResponse({"errorMessage": "duplicate request"}, status_code=409)
        self.pulled.add((user, summary, a, b))
        return JSONResponse([u.item for u in self.uploads if u.user == user and u.summary == summary
                             and a <= u.at < b])

    async def _backfill(self, request: Request) -> Response:
        if (limited := self._limited()) is not None:
            return limited
        user = self._user(request)
        if user is None:
            return JSONResponse({"errorMessage": "unauthorized"}, status_code=401)
        summary = request.path_params["summary"]
        try:
            a = int(request.query_params["summaryStartTimeInSeconds"])
            b = int(request.query_params["summaryEndTimeInSeconds"])
        except (KeyError, ValueError):
            return JSONResponse({"errorMessage": "summary time range required"}, status_code=400)
        if not 0 < b - a <= BACKFILL_MAX_S:
            return JSONResponse({"errorMessage": "range must be 1 s to 90 days"}, status_code=400)
        done = self.backfills.setdefault(user, [])
        if any(s == summary and a < e and s0 < b for s, s0, e in done):
            return JSONResponse({"errorMessage": "duplicate backfill request"}, status_code=409)
        done.append((summary, a, b))
        return Response(status_code=202, background=BackgroundTask(self._send_backfill, user, summary, a, b))

    def _send_backfill(self, user: str, summary: str, a: int, b: int) -> None:
        """Garmin re-sends the summaries of the range as a fresh upload, notified like any other."""
        items = [u.item for u in self.uploads if u.user == user and u.summary == summary
                 and a <= int(u.item["startTimeInSeconds"]) < b]
        if items and self.endpoint:
            latest = {}
            for it in items:  # the newest version of each summary
                latest[str(it.get("summaryId"))] = it
            at = self.upload(user, summary, list(latest.values()))
            self.notify(user, summary, at)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/oauth2Confirm", self._authorize),
            Route("/di-oauth2-service/oauth/token", self._token, methods=["POST"]),
            Route("/wellness-api/rest/user/id", self._user_id),
            Route("/wellness-api/rest/user/registration", self._deregister, methods=["DELETE"]),
            Route("/wellness-api/rest/backfill/{summary}", self._backfill),
            Route("/wellness-api/rest/{summary}", self._pull),
        ])
