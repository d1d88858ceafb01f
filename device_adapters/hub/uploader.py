"""Spool to gateway: `POST /v1/events` per device with its enrolment token, oldest first.

An event leaves the spool only when the gateway has answered for it: 202 (`accepted` or
`duplicate`: either way it is downstream exactly once, the gateway deduplicates by event id) or a
per-item refusal (422/403 `…-events`, recorded in the spool's rejections with the reason). A kill
between the gateway's answer and the spool's delete re-sends the batch, which comes back as
duplicates: nothing lost, nothing doubled. Network errors, 429 and 5xx are retried with back-off;
a refused credential (401, 403 `credential-revoked`) pauses that device's uploads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from device_adapters.hub.spool import Spool
from rtm.retrying import Backoff

log = logging.getLogger(__name__)


@dataclass
class UploadStats:
    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    failures: int = 0
    last_sync: float | None = None
    last_sync_by_device: dict[str, float] = field(default_factory=dict)
    paused: dict[str, str] = field(default_factory=dict)


class Uploader:
    def __init__(self, spool: Spool, gateway_url: str, tokens: dict[str, str], *, batch_events: int = 50,
                 backoff: Backoff | None = None, http: httpx.AsyncClient | None = None,
                 timeout_s: float = 30.0) -> None:
        self.spool = spool
        self.tokens = tokens
        self.batch_events = batch_events
        self.backoff = backoff or Backoff(1.0, 60.0)
        self.http = http or httpx.AsyncClient(base_url=gateway_url, timeout=timeout_s)
        self.stats = UploadStats()

    async def _post(self, device_id: str, bodies: list[bytes]) -> httpx.Response:
        payload = b'{"events":[' + b",".join(bodies) + b"]}"
        self.stats.requests += 1
        return await self.http.post("/v1/events", content=payload, headers={
            "Authorization": f"Bearer {self.tokens[device_id]}", "Content-Type": "application/json"})

    async def upload_device(self, device_id: str) -> int:
        """One request's worth of this device's oldest events; returns how many left the spool.
        Raises httpx.HTTPError (network) or RuntimeError (gateway busy/failing) to ask for a retry."""
        if device_id in self.stats.paused:
            return 0
        if device_id not in self.tokens:
            self.stats.paused[device_id] = "no credential configured"
            return 0
        items = self.spool.peek(self.batch_events, device_id)
        if not items:
            return 0
        r = await self._post(device_id, [i.body for i in items])
        if r.status_code == 202:
            doc = r.json()
            self.stats.accepted += int(doc.get("accepted", 0))
            self.stats.duplicates += int(doc.get("duplicates", 0))
            self.spool.ack([i.event_id for i in items])
            self.stats.last_sync = self.stats.last_sync_by_device[device_id] = time.time()
            return len(items)
        problem: dict[str, Any] = _json(r)
        kind = str(problem.get("type", "")).rsplit("/", 1)[-1]
        if r.status_code == 401 or (r.status_code == 403 and kind in ("credential-revoked", "forbidden")):
            self.stats.paused[device_id] = f"{r.status_code} {problem.get('title') or problem.get('detail') or ''}"
            log.error("%s: the gateway refused the device credential (%s): uploads paused", device_id, r.status_code)
            return 0
        errors = problem.get("errors") if r.status_code in (403, 422) else None
        if isinstance(errors, list) and errors:
            bad = [(items[e["index"]].event_id, r.status_code, f"{e.get('code')}: {e.get('detail')}")
                   for e in errors if isinstance(e, dict) and 0 <= int(e.get("index", -1)) < len(items)]
            self.spool.reject(device_id, bad)
            self.stats.rejected += len(bad)
            log.warning("%s: %d events refused by the gateway (kept in the spool's rejections)", device_id, len(bad))
            return len(bad)
        if r.status_code == 413 and self.batch_events > 1:
            self.batch_events = max(1, self.batch_events // 2)
            return 0
        raise RuntimeError(f"gateway answered {r.status_code}: {problem.get('detail') or r.text[:200]}")

    async def drain(self) -> int:
        """Upload until the spool is empty (or every remaining device is paused)."""
        total = 0
        while True:
            moved = 0
            for device_id in self.spool.devices():
                moved += await self.upload_device(device_id)
            total += moved
            if moved == 0:
                return total

    async def run(self, stop: asyncio.Event, idle_s: float = 1.0) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                moved = await self.drain()
                attempt = 0
                wait = idle_s if moved == 0 else 0.0
            except (httpx.HTTPError, RuntimeError) as exc:
                self.stats.failures += 1
                wait = self.backoff.delay(attempt)
                attempt += 1
                log.warning("upload failed (%s); retrying in %.1f s", exc, wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def close(self) -> None:
        await self.http.aclose()


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        doc = r.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
