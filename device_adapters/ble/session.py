"""One device's BLE session, written only against bleak's public API: find the enrolled device
by address (or name) and profile service, connect, enable notifications, send the profile's start
commands, feed every notification to the profile's decoder, and reconnect with exponential
back-off when the link drops. `scanner_backend`/`client_backend` (and `backend_kwargs`) are
bleak's `backend=` hook: None selects the platform's stack (BlueZ on a Linux hub).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from device_adapters.ble.profiles.base import Decoder, Profile, Reading, sig_uuid
from rtm.retrying import Backoff

log = logging.getLogger(__name__)

ReadingsSink = Callable[[str, list[Reading]], None]
BATTERY_LEVEL = sig_uuid(0x2A19)


@dataclass
class SessionStats:
    connects: int = 0
    disconnects: int = 0
    failed_attempts: int = 0
    notifications: int = 0
    last_error: str | None = None
    mtu: int | None = None
    battery_pct: int | None = None  # SIG Battery Level (0x2A19), read at each connection when offered
    history: list[str] = field(default_factory=list)


class BleSession:
    def __init__(self, profile: Profile, device_id: str, sink: ReadingsSink, *, address: str | None = None,
                 name: str | None = None, scan_timeout_s: float = 10.0, backoff: Backoff | None = None,
                 scanner_backend: type[BaseBleakScanner] | None = None,
                 client_backend: type[BaseBleakClient] | None = None,
                 backend_kwargs: dict[str, Any] | None = None) -> None:
        if address is None and name is None:
            raise ValueError("a BLE session needs the enrolled device's address or advertised name")
        self.profile = profile
        self.device_id = device_id
        self.sink = sink
        self.address = address.upper() if address else None
        self.name = name
        self.scan_timeout_s = scan_timeout_s
        self.backoff = backoff or Backoff()
        self.scanner_backend = scanner_backend
        self.client_backend = client_backend
        self.backend_kwargs = backend_kwargs or {}
        self.stats = SessionStats()
        self.decoder: Decoder = profile.decoder()
        self.connected = asyncio.Event()
        self._client: BleakClient | None = None
        self._lost = asyncio.Event()

    def _matches(self, device: BLEDevice, adv: AdvertisementData) -> bool:
        if self.profile.service_uuid not in [u.lower() for u in adv.service_uuids]:
            return False
        if self.address is not None:
            return device.address.upper() == self.address
        return adv.local_name == self.name

    async def _find(self) -> BLEDevice | None:
        extra: dict[str, Any] = dict(self.backend_kwargs)
        if self.scanner_backend is not None:
            extra["backend"] = self.scanner_backend
        return await BleakScanner.find_device_by_filter(
            self._matches, timeout=self.scan_timeout_s, service_uuids=[self.profile.service_uuid], **extra)

    def _on_notify(self, char: BleakGATTCharacteristic, data: bytearray) -> None:
        self.stats.notifications += 1
        readings = self.decoder.feed(char.uuid, data)
        if readings:
            self.sink(self.device_id, readings)

    async def connect_once(self) -> BleakClient:
        """Find, connect, subscribe and start streaming; returns the connected client."""
        device = await self._find()
        if device is None:
            raise BleakError(f"{self.device_id}: no advertisement from the enrolled device within "
                             f"{self.scan_timeout_s:.0f} s")
        lost = asyncio.Event()
        client = BleakClient(device, disconnected_callback=lambda _c: lost.set(), backend=self.client_backend,
                             **self.backend_kwargs)
        await client.connect()
        self._lost = lost
        try:
            for uuid in self.profile.notify_uuids:
                await client.start_notify(uuid, self._on_notify)
            for cmd in self.profile.start_commands():
                await client.write_gatt_char(cmd.char_uuid, cmd.payload, response=cmd.response)
        except BaseException:
            # a half-set-up link (a characteristic missing, a write refused) is dropped, not kept
            with contextlib.suppress(BleakError, OSError, TimeoutError):
                await client.disconnect()
            raise
        self.stats.connects += 1
        self.stats.mtu = client.mtu_size
        await self._read_battery(client)
        self._client = client
        self.connected.set()
        return client

    async def _read_battery(self, client: BleakClient) -> None:
        if client.services.get_characteristic(BATTERY_LEVEL) is None:
            return
        with contextlib.suppress(BleakError):
            value = await client.read_gatt_char(BATTERY_LEVEL)
            if len(value) == 1 and value[0] <= 100:  # a percentage (Battery Service spec)
                self.stats.battery_pct = value[0]

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until `stop` is set, reconnecting with back-off after every loss."""
        attempt = 0
        while not stop.is_set():
            try:
                await self.connect_once()
                attempt = 0
                stopper = asyncio.ensure_future(stop.wait())
                dropper = asyncio.ensure_future(self._lost.wait())
                await asyncio.wait({stopper, dropper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                dropper.cancel()
                self.connected.clear()
                if stop.is_set():
                    await self.close()
                    return
                self.stats.disconnects += 1
                self.stats.history.append("disconnected")
                log.info("%s: link lost, reconnecting", self.device_id)
            except (BleakError, TimeoutError, OSError) as exc:
                self.stats.failed_attempts += 1
                self.stats.last_error = str(exc)
                log.warning("%s: %s", self.device_id, exc)
                delay = self.backoff.delay(attempt)
                attempt += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            for cmd in self.profile.stop_commands():
                try:
                    await client.write_gatt_char(cmd.char_uuid, cmd.payload, response=cmd.response)
                except BleakError:
                    break
            await client.disconnect()
