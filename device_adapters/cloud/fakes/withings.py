"""A local fake of the Withings Health Data API (NOT Withings' service), from its published
description, awkward parts included:

- every answer is HTTP 200 with the outcome in the body's `status` (0 ok, 401 token refused,
  503 invalid params, 601 too many requests, 2555 unknown error);
- OAuth: GET /oauth2_user/authorize2 (the "logged-in" user consents at once), POST /v2/oauth2
  `action=requesttoken` with the client secret in the form, single-use codes bound to their
  redirect_uri, 3-hour access tokens and refresh tokens that rotate (the old one stops working);
- POST /v2/measure `action=getintradayactivity`: unix-second ranges, silently cut to the first
  24 h; `series` keyed by the sample's start; an empty answer is `[]`, not `{}`;
- POST /notify `action=subscribe|revoke|list` (appli 16), and unsigned form-encoded notifications
  (`userid`, `appli`, `startdate`, `enddate`) POSTed to every subscribed callback URL.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

Deliver = Callable[[str, bytes, dict[str, str]], int]
DAY_S = 24 * 3600


def http_deliver(url: str, body: bytes, headers: dict[str, str]) -> int:
    return httpx.post(url, content=body, headers=headers, timeout=10.0).status_code


def _status(status: int, error: str | None = None, body: Any = None) -> JSONResponse:
    out: dict[str, Any] = {"status": status}
    if body is not None:
        out["body"] = body
    if error:
        out["error"] = error
    return JSONResponse(out)  # HTTP 200 whatever happened: the status is in the body


@dataclass
class WithingsFake:
    base_url: str = "http://127.0.0.1"
    client_id: str = "fake-withings-client"
    client_secret: str = "fake-withings-secret"
    deliver: Deliver = http_deliver
    token_lifetime_s: int = 10_800  # Withings' access tokens last 3 hours
    tokens: dict[str, tuple[int, float]] = field(default_factory=dict)  # access token -> (user, expiry)
    refresh_tokens: dict[str, int] = field(default_factory=dict)
    steps: dict[int, dict[int, tuple[int, int]]] = field(default_factory=dict)  # user -> start -> (steps, s)
    subscriptions: dict[int, set[str]] = field(default_factory=dict)
    rate_budget: int | None = None  # data requests allowed before status 601 (None: unlimited)
    fail_next: int = 0  # answer status 2555 to this many data requests
    calls: int = 0
    data_calls: list[tuple[int, int, int]] = field(default_factory=list)  # (user, start, end) asked
    refreshes: int = 0
    _codes: dict[str, tuple[int, str]] = field(default_factory=dict)

    # --- test and demo controls -----------------------------------------------------------------
    def add_steps(self, user: int, samples: dict[int, int], duration_s: int = 60) -> None:
        """Samples as {unix start: steps}; a later call for the same start replaces it (Withings
        updates a sample while the device still syncs)."""
        day = self.steps.setdefault(user, {})
        for t, n in samples.items():
            day[int(t)] = (int(n), duration_s)

    def revoke(self, user: int) -> None:
        """The user unlinked the app in Withings: their access and refresh tokens stop working."""
        for t in [t for t, (u, _) in self.tokens.items() if u == user]:
            del self.tokens[t]
        for t in [t for t, u in self.refresh_tokens.items() if u == user]:
            del self.refresh_tokens[t]

    def consent(self, authorization_url: str, user: int) -> str:
        q = httpx.URL(authorization_url).params
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            raise ValueError("the authorization URL names another client or response type")
        code = secrets.token_urlsafe(16)
        self._codes[code] = (user, q.get("redirect_uri") or "")
        return f"{q.get('redirect_uri')}?{urlencode({'code': code, 'state': q.get('state') or ''})}"

    def notification(self, user: int, start_s: int, end_s: int, appli: int = 16) -> tuple[bytes, dict[str, str]]:
        body = urlencode({"userid": user, "appli": appli, "startdate": start_s, "enddate": end_s}).encode()
        return body, {"Content-Type": "application/x-www-form-urlencoded"}

    def notify(self, user: int, start_s: int, end_s: int) -> list[int]:
        """Deliver an activity notification to each subscribed callback; the statuses got."""
        body, headers = self.notification(user, start_s, end_s)
        return [self.deliver(url, body, headers) for url in sorted(self.subscriptions.get(user, set()))]

    # --- HTTP -------------------------------------------------------------------------------------
    @staticmethod
    async def _form(request: Request) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}

    def _user(self, request: Request) -> int | None:
        got = self.tokens.get(request.headers.get("authorization", "").removeprefix("Bearer "))
        if got is None or got[1] < time.time():
            return None
        return got[0]

    def _issue(self, user: int) -> JSONResponse:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.tokens[access] = (user, time.time() + self.token_lifetime_s)
        self.refresh_tokens[refresh] = user
        return _status(0, body={"userid": user, "access_token": access, "refresh_token": refresh,
                                "expires_in": self.token_lifetime_s, "scope": "user.activity",
                                "csrf_token": secrets.token_hex(8), "token_type": "Bearer"})

    async def _authorize(self, request: Request) -> Response:
        return RedirectResponse(self.consent(str(request.url), 1000), status_code=302)

    async def _token(self, request: Request) -> Response:
        form = await self._form(request)
        if form.get("action") != "requesttoken":
            return _status(2554, "Wrong action or wrong webservice")
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return _status(503, "Invalid Params: invalid client")
        if form.get("grant_type") == "authorization_code":
            got = self._codes.pop(form.get("code", ""), None)  # single use
            if got is None or got[1] != form.get("redirect_uri"):
                return _status(503, "Invalid Params: invalid code")
            return self._issue(got[0])
        if form.get("grant_type") == "refresh_token":
            user = self.refresh_tokens.pop(form.get("refresh_token", ""), None)  # rotates
            if user is None:
                return _status(503, "Invalid Params: invalid refresh_token")
            self.refreshes += 1
            return self._issue(user)
        return _status(503, "Invalid Params: grant_type")

    async def _measure(self, request: Request) -> Response:
        self.calls += 1
        form = await self._form(request)
        user = self._user(request)
        if user is None:
            return _status(401, "XRequestID: Not provided invalid_token: The access token provided is invalid")
        if self.rate_budget is not None:
            if self.rate_budget <= 0:
                return _status(601, "Too Many Requests")
            self.rate_budget -= 1
        if self.fail_next > 0:
            self.fail_next -= 1
            return _status(2555, "An unknown error occurred")
        if form.get("action") != "getintradayactivity":
            return _status(2554, "Wrong action or wrong webservice")
        try:
            start, end = int(form["startdate"]), int(form["enddate"])
        except (KeyError, ValueError):
            return _status(503, "Invalid Params: startdate/enddate")
        self.data_calls.append((user, start, end))
        end = min(end, start + DAY_S)  # Withings cuts a longer range to its first 24 h
        series = {str(t): {"steps": n, "duration": d, "deviceid": "fake-tracker", "model": "ScanWatch"}
                  for t, (n, d) in sorted(self.steps.get(user, {}).items()) if start <= t < end}
        return _status(0, body={"series": series or []})

    async def _notify(self, request: Request) -> Response:
        form = await self._form(request)
        user = self._user(request)
        if user is None:
            return _status(401, "invalid_token")
        subs = self.subscriptions.setdefault(user, set())
        action, url = form.get("action"), form.get("callbackurl", "")
        if action == "subscribe":
            if form.get("appli") != "16" or not url.startswith(("http://", "https://")):
                return _status(503, "Invalid Params")
            subs.add(url)
            return _status(0, body={})
        if action == "revoke":
            if url not in subs:
                return _status(294, "No such subscription")
            subs.discard(url)
            return _status(0, body={})
        if action == "list":
            return _status(0, body={"profiles": [{"appli": 16, "callbackurl": u} for u in sorted(subs)]})
        return _status(2554, "Wrong action or wrong webservice")

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/oauth2_user/authorize2", self._authorize),
            Route("/v2/oauth2", self._token, methods=["POST"]),
            Route("/v2/measure", self._measure, methods=["POST"]),
            Route("/notify", self._notify, methods=["POST"]),
        ])
