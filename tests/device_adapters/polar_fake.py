"""A local stand-in for Polar AccessLink — NOT Polar's service. It implements, from the published
v3 API description, the two things the gateway touches: signed webhook deliveries (to the
gateway) and GET /v3/users/activities/samples/{date} (from the gateway), including 204 for a day
without data, 401 for a bad token, and the filtering of repeated step samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from device_adapters.cloud.polar import sign


@dataclass
class PolarFake:
    webhook_secret: bytes
    tokens: dict[str, int] = field(default_factory=dict)  # access token -> user id
    days: dict[tuple[int, str], list[tuple[str, int]]] = field(default_factory=dict)
    interval_ms: int = 60_000
    fail_next: int = 0  # answer 500 to this many data requests
    calls: int = 0

    def add_day(self, user_id: int, date: str, minute_steps: list[tuple[str, int]]) -> None:
        """Per-slot (local 'YYYY-MM-DDTHH:MM', steps); repeats are filtered out as AccessLink does."""
        self.days[(user_id, date)] = minute_steps

    def _filtered(self, slots: list[tuple[str, int]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for ts, steps in slots:
            if out and out[-1]["steps"] == steps:
                continue
            out.append({"steps": steps, "timestamp": ts})
        return out

    async def _samples(self, request: Request) -> Response:
        self.calls += 1
        auth = request.headers.get("authorization", "")
        user = self.tokens.get(auth.removeprefix("Bearer "))
        if user is None:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        if self.fail_next > 0:
            self.fail_next -= 1
            return JSONResponse({"error": "internal"}, status_code=500)
        date = request.path_params["date"]
        slots = self.days.get((user, date))
        if not slots:
            return Response(status_code=204)
        return JSONResponse(
            {
                "date": date,
                "steps": {
                    "interval_ms": self.interval_ms,
                    "total_steps": sum(s for _, s in slots),
                    "samples": self._filtered(slots),
                },
            }
        )

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v3/users/activities/samples/{date}", self._samples)])

    def notification(self, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = orjson.dumps(payload)
        return body, {
            "Polar-Webhook-Signature": sign(self.webhook_secret, body),
            "Content-Type": "application/json",
        }
