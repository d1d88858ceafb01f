"""A local fake of Polar AccessLink v3 (NOT Polar's service), from its published API description:

- OAuth: GET /oauth2/authorization (the consent page: here the "logged-in" user consents at once
  and is redirected with `code` and `state`), POST /v2/oauth2/token (HTTP Basic client
  credentials, single-use codes bound to their redirect_uri; answers access_token, expires_in,
  x_user_id and no refresh token);
- users: POST /v3/users (409 when registered already), DELETE /v3/users/{id};
- data: GET /v3/users/activities/samples/{date} (401 for an unknown or revoked token, 403 for an
  unregistered user (assumed: the documentation says only that registration comes first), 204 for a
  day without data, repeated values left out, 429 with RateLimit-* headers past the budget);
- webhooks: POST /v3/webhooks (PINGs the URL first, creates only on 200, returns the
  signature_secret_key once; one webhook per client, a second gets 409), GET, PATCH,
  POST /v3/webhooks/activate, and signed deliveries (`Polar-Webhook-Signature`).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from device_adapters.cloud.polar import SIGNATURE_HEADER, sign

Deliver = Callable[[str, bytes, dict[str, str]], int]


def http_deliver(url: str, body: bytes, headers: dict[str, str]) -> int:
    return httpx.post(url, content=body, headers=headers, timeout=10.0).status_code


@dataclass
class Webhook:
    id: str
    url: str
    events: list[str]
    secret: str
    active: bool = True


@dataclass
class PolarFake:
    base_url: str = "http://127.0.0.1"  # set once served (fakes.server.serve)
    client_id: str = "fake-polar-client"
    client_secret: str = "fake-polar-secret"
    webhook_secret: bytes | None = None  # fixed secret for a webhook made outside the API (tests)
    deliver: Deliver = http_deliver
    token_lifetime_s: int = 315_360_000  # AccessLink tokens are long-lived; no refresh token
    tokens: dict[str, int] = field(default_factory=dict)  # access token -> user id
    registered: set[int] = field(default_factory=set)
    days: dict[tuple[int, str], list[tuple[str, int]]] = field(default_factory=dict)
    interval_ms: int = 60_000
    fail_next: int = 0  # answer 500 to this many data requests
    rate_budget: int | None = None  # data requests allowed before 429 (None: unlimited)
    rate_reset_s: int = 900  # the short window AccessLink documents is 15 minutes
    calls: int = 0
    data_calls: list[tuple[int, str]] = field(default_factory=list)
    login_user: int = 1000  # whoever is "logged in" on the consent page
    webhook: Webhook | None = None
    _codes: dict[str, tuple[int, str]] = field(default_factory=dict)  # code -> (user, redirect_uri)

    # --- test and demo controls -----------------------------------------------------------------
    def add_day(self, user_id: int, date: str, minute_steps: list[tuple[str, int]]) -> None:
        """Per-slot (local 'YYYY-MM-DDTHH:MM', steps); repeats are filtered out when served."""
        self.days[(user_id, date)] = minute_steps

    def revoke(self, user_id: int) -> None:
        """The user withdrew consent in Polar Flow: every token of theirs stops working."""
        for t in [t for t, u in self.tokens.items() if u == user_id]:
            del self.tokens[t]

    def consent(self, authorization_url: str, user_id: int | None = None) -> str:
        """What the patient's browser does at the consent page: the redirect URL it is sent to."""
        url = httpx.URL(authorization_url)
        q = url.params
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            raise ValueError("the authorization URL names another client or response type")
        code = secrets.token_urlsafe(16)
        redirect = q.get("redirect_uri") or ""
        self._codes[code] = (self.login_user if user_id is None else user_id, redirect)
        return f"{redirect}?{urlencode({'code': code, 'state': q.get('state') or ''})}"

    def notification(self, payload: dict[str, Any], secret: bytes | None = None) -> tuple[bytes, dict[str, str]]:
        key = secret or self.webhook_secret or (self.webhook.secret.encode() if self.webhook else b"")
        body = orjson.dumps(payload)
        return body, {SIGNATURE_HEADER: sign(key, body), "Content-Type": "application/json",
                      "Polar-Webhook-Event": str(payload.get("event", ""))}

    def activity_summary(self, user_id: int, date: str) -> tuple[bytes, dict[str, str]]:
        return self.notification({
            "event": "ACTIVITY_SUMMARY", "user_id": user_id, "date": date,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "url": f"https://www.polaraccesslink.com/v3/users/activities/{date}",
        })

    def push_activity(self, user_id: int, date: str) -> int:
        """Deliver an ACTIVITY_SUMMARY to the registered webhook; the HTTP status it got."""
        if self.webhook is None or not self.webhook.active:
            raise RuntimeError("no active webhook")
        body, headers = self.activity_summary(user_id, date)
        return self.deliver(self.webhook.url, body, headers)

    # --- HTTP -------------------------------------------------------------------------------------
    def _basic_ok(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Basic "):
            return False
        try:
            cid, _, sec = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return False
        return secrets.compare_digest(cid, self.client_id) and secrets.compare_digest(sec, self.client_secret)

    def _user(self, request: Request) -> int | None:
        return self.tokens.get(request.headers.get("authorization", "").removeprefix("Bearer "))

    async def _authorize(self, request: Request) -> Response:
        return RedirectResponse(self.consent(str(request.url)), status_code=302)

    async def _token(self, request: Request) -> Response:
        if not self._basic_ok(request):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        got = self._codes.pop(str(form.get("code", "")), None)  # single use
        if got is None or got[1] != form.get("redirect_uri", got[1]):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        token = secrets.token_urlsafe(24)
        self.tokens[token] = got[0]
        return JSONResponse({"access_token": token, "token_type": "bearer",
                             "expires_in": self.token_lifetime_s, "x_user_id": got[0]})

    async def _users(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = orjson.loads(await request.body() or b"{}")
        if "member-id" not in body:
            return JSONResponse({"error": "member-id missing"}, status_code=400)
        if user in self.registered:
            return JSONResponse({"error": "user already registered"}, status_code=409)
        self.registered.add(user)
        return JSONResponse({"polar-user-id": user, "member-id": body["member-id"]})

    async def _user_delete(self, request: Request) -> Response:
        user = self._user(request)
        if user is None or str(user) != request.path_params["user_id"]:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        self.registered.discard(user)
        return Response(status_code=204)

    def _rate_headers(self) -> dict[str, str]:
        if self.rate_budget is None:
            return {}
        return {"RateLimit-Usage": str(self.calls), "RateLimit-Limit": str(self.calls + self.rate_budget),
                "RateLimit-Reset": str(self.rate_reset_s)}

    async def _samples(self, request: Request) -> Response:
        self.calls += 1
        user = self._user(request)
        if user is None:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        if self.rate_budget is not None:
            if self.rate_budget <= 0:
                return JSONResponse({"error": "too many requests"}, status_code=429, headers=self._rate_headers())
            self.rate_budget -= 1
        if user not in self.registered:
            return JSONResponse({"error": "user not registered"}, status_code=403)
        if self.fail_next > 0:
            self.fail_next -= 1
            return JSONResponse({"error": "internal"}, status_code=500)
        date = request.path_params["date"]
        self.data_calls.append((user, date))
        slots = self.days.get((user, date))
        if not slots:
            return Response(status_code=204)
        samples: list[dict[str, Any]] = []
        for ts, steps in slots:
            if samples and samples[-1]["steps"] == steps:
                continue  # AccessLink leaves out repeated values
            samples.append({"steps": steps, "timestamp": ts})
        return JSONResponse(
            {"date": date, "steps": {"interval_ms": self.interval_ms,
                                     "total_steps": sum(s for _, s in slots), "samples": samples}},
            headers=self._rate_headers(),
        )

    async def _webhooks(self, request: Request) -> Response:
        if not self._basic_ok(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        if request.method == "GET":
            hooks = [] if self.webhook is None else [
                {"id": self.webhook.id, "events": self.webhook.events, "url": self.webhook.url,
                 "active": self.webhook.active}]
            return JSONResponse({"data": hooks})
        if self.webhook is not None:
            return JSONResponse({"error": "webhook already exists"}, status_code=409)
        body = orjson.loads(await request.body())
        url, events = str(body.get("url", "")), list(body.get("events") or [])
        ping = orjson.dumps({"event": "PING", "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z")})
        secret = (self.webhook_secret or secrets.token_hex(16).encode()).decode()
        status = await asyncio.to_thread(
            self.deliver, url, ping,
            {SIGNATURE_HEADER: sign(secret.encode(), ping), "Content-Type": "application/json",
             "Polar-Webhook-Event": "PING"},
        )
        if status != 200:
            return JSONResponse({"error": f"webhook ping answered {status}"}, status_code=400)
        self.webhook = Webhook(secrets.token_hex(4), url, events, secret)
        return JSONResponse({"data": {"id": self.webhook.id, "events": events, "url": url,
                                      "signature_secret_key": secret}}, status_code=201)

    async def _webhook_patch(self, request: Request) -> Response:
        if not self._basic_ok(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        if self.webhook is None or self.webhook.id != request.path_params["webhook_id"]:
            return JSONResponse({"error": "not found"}, status_code=404)
        body = orjson.loads(await request.body())
        self.webhook.url = str(body.get("url", self.webhook.url))
        self.webhook.events = list(body.get("events") or self.webhook.events)
        return JSONResponse({"data": {"id": self.webhook.id, "events": self.webhook.events, "url": self.webhook.url}})

    async def _webhook_activate(self, request: Request) -> Response:
        if not self._basic_ok(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        if self.webhook is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        self.webhook.active = True
        return Response(status_code=204)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/oauth2/authorization", self._authorize),
            Route("/v2/oauth2/token", self._token, methods=["POST"]),
            Route("/v3/users", self._users, methods=["POST"]),
            Route("/v3/users/{user_id}", self._user_delete, methods=["DELETE"]),
            Route("/v3/users/activities/samples/{date}", self._samples),
            Route("/v3/webhooks", self._webhooks, methods=["GET", "POST"]),
            Route("/v3/webhooks/activate", self._webhook_activate, methods=["POST"]),
            Route("/v3/webhooks/{webhook_id}", self._webhook_patch, methods=["PATCH"]),
        ])
