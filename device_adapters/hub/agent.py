"""The hub agent: one BLE session per enrolled device, their readings assembled into canonical
events and spooled, and an uploader draining the spool to the gateway.

Samples wait in memory for at most `batch_s` before they are an event on disk: that is what a
power cut can cost (the devices do not resend). Everything spooled survives a kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

from device_adapters.ble import profiles
from device_adapters.ble.profiles.base import Reading
from device_adapters.ble.session import BleSession
from device_adapters.hub.assemble import Assembler, DeviceIdentity
from device_adapters.hub.config import HubConfig
from device_adapters.hub.health import report_health
from device_adapters.hub.spool import Spool
from device_adapters.hub.uploader import Uploader
from rtm.contract import Event
from rtm.retrying import Backoff

log = logging.getLogger(__name__)


def event_body(event: Event) -> bytes:
    doc = event.model_dump(mode="json")
    doc["kind"] = event.kind
    return json.dumps(doc, separators=(",", ":")).encode()


class HubAgent:
    def __init__(self, config: HubConfig, *, scanner_backend: type[BaseBleakScanner] | None = None,
                 client_backend: type[BaseBleakClient] | None = None,
                 backend_kwargs: dict[str, Any] | None = None, uploader: Uploader | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock  # the host's UTC clock (a replay of recorded sessions passes its own)
        self.spool = Spool(config.spool_path, config.spool_max_bytes)
        self.uploader = uploader or Uploader(
            self.spool, config.gateway_url,
            {d.device_id: d.token.get_secret_value() for d in config.devices if d.token is not None},
            batch_events=config.upload_batch_events)
        self.assemblers: dict[str, Assembler] = {}
        self.sessions: list[BleSession] = []
        backoff = Backoff(config.reconnect_initial_s, config.reconnect_max_s)
        for d in config.devices:
            profile = profiles.get(d.profile)(**d.profile_options)
            self.assemblers[d.device_id] = Assembler(
                DeviceIdentity(d.device_id, d.patient_id, d.episode_id, profile.vendor, profile.name, d.body_site),
                config.batch_s, config.step_interval_s)
            self.sessions.append(BleSession(
                profile, d.device_id, self._sink, address=d.address, name=d.name,
                scan_timeout_s=config.scan_timeout_s, backoff=backoff, scanner_backend=scanner_backend,
                client_backend=client_backend, backend_kwargs=backend_kwargs))

    def _sink(self, device_id: str, readings: list[Reading]) -> None:
        events = self.assemblers[device_id].add(readings, self.clock())
        if events:
            self.spool_events(device_id, events)

    def spool_events(self, device_id: str, events: list[Event]) -> None:
        before = self.spool.evicted()
        self.spool.put([(str(e.id), device_id, e.kind, event_body(e)) for e in events])
        evicted = self.spool.evicted() - before
        if evicted:
            log.error("spool full (%d bytes): %d oldest events evicted", self.config.spool_max_bytes, evicted)

    def flush(self) -> None:
        for device_id, assembler in self.assemblers.items():
            events = assembler.flush()
            if events:
                self.spool_events(device_id, events)

    def health(self) -> dict[str, Any]:
        """What the hub knows about itself: written to `health_path`, and reported to the gateway
        (`device_adapters.hub.health`) every `health_report_s`."""
        return {
            "at": time.time(),
            "last_sync": self.uploader.stats.last_sync,
            "spool_depth": self.spool.depth(),
            "spool_bytes": self.spool.bytes(),
            "evicted": self.spool.evicted(),
            "rejected": self.spool.rejected(),
            "paused_uploads": self.uploader.stats.paused,
            "devices": {
                s.device_id: {
                    "connected": s.connected.is_set(), "connects": s.stats.connects,
                    "battery_pct": s.stats.battery_pct,
                    "notifications": s.stats.notifications, "bad_frames": dict(s.decoder.stats.bad),
                    "clock_resets": self.assemblers[s.device_id].clock.resets,
                    "last_error": s.stats.last_error,
                } for s in self.sessions
            },
        }

    async def run(self, stop: asyncio.Event, health_every_s: float = 30.0) -> None:
        tasks = [asyncio.ensure_future(s.run(stop)) for s in self.sessions]
        tasks.append(asyncio.ensure_future(self.uploader.run(stop)))
        every = self.config.health_report_s
        tick = min(health_every_s, every) if every > 0 else health_every_s
        next_report = time.monotonic()
        try:
            while not stop.is_set():
                if self.config.health_path is not None:
                    self.config.health_path.write_text(json.dumps(self.health()))
                if every > 0 and time.monotonic() >= next_report:
                    await report_health(self)
                    next_report = time.monotonic() + every
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), tick)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.flush()

    async def close(self) -> None:
        await self.uploader.close()
        self.spool.close()
