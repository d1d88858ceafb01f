"""Virtual BLE for tests: bumble controllers on one in-process link ("the air"), bumble GATT servers
playing device profiles, and a bleak backend (scanner + client) driving a bumble host as central.

The adapters under test use only bleak's public API with `backend=` pointing here, so every
scan, connection, discovery, CCCD write, MTU exchange and notification goes through bumble's real
HCI/L2CAP/ATT/GATT code: a notification longer than ATT_MTU - 3 is cut exactly as a phone's
stack would cut it (ATT_MTU is 23 until the central negotiates more).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError
from bumble import gatt
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

_addresses = itertools.count(1)
BATTERY_SERVICE = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"


def _new_address() -> str:
    n = next(_addresses)
    return f"C0:00:00:00:{n >> 8:02X}:{n & 0xFF:02X}"  # static random: top two bits set


def _device(link: LocalLink, name: str) -> Device:
    address = _new_address()
    controller = Controller(name, link=link, public_address=address)
    return Device(name=name, address=Address(address), host=Host(controller, AsyncPipeSink(controller)))


class Air:
    """The shared radio medium; the hub's central device lives here too."""

    def __init__(self) -> None:
        self.link = LocalLink()  # type: ignore[no-untyped-call]
        self.central = _device(self.link, "hub")
        self._central_on = False
        # One central, as on a hub: LE connections are created one at a time (one pending HCI LE
        # Create Connection), and scans of several sessions share the controller's one scan.
        self.connect_lock = asyncio.Lock()
        self.scanners = 0

    async def scan(self, on: bool) -> None:
        self.scanners += 1 if on else -1
        if on and self.scanners == 1:
            await self.central.start_scanning(active=False, filter_duplicates=False)
        elif not on and self.scanners == 0:
            await self.central.stop_scanning()

    async def central_device(self) -> Device:
        if not self._central_on:
            await self.central.power_on()
            self._central_on = True
        return self.central


WriteHandler = Callable[[Connection, str, bytes], Awaitable[None] | None]


class VirtualPeripheral:
    """A bumble GATT server advertising one service (connectable, name + 128-bit service UUID)."""

    def __init__(self, air: Air, name: str, service_uuid: str, chars: dict[str, str],
                 on_write: WriteHandler | None = None, battery_pct: int | None = None) -> None:
        """`chars` maps characteristic UUID to bleak-style properties ("notify", "write,indicate");
        `battery_pct` adds the SIG Battery Service (0x180F) with its Battery Level (0x2A19)."""
        self.air = air
        self.name = name
        self.service_uuid = service_uuid
        self.device = _device(air.link, name)
        self.on_write = on_write
        self.chars: dict[str, gatt.Characteristic[bytes]] = {}
        for char_uuid, props in chars.items():
            value: Any = b""
            if "write" in props:
                value = gatt.CharacteristicValue(write=self._writer(char_uuid))
            flags = gatt.Characteristic.Properties.from_string(props.replace("write", "WRITE").upper())
            self.chars[char_uuid] = gatt.Characteristic(
                UUID(char_uuid), flags, gatt.Characteristic.READABLE | gatt.Characteristic.WRITEABLE, value)
        self.device.add_service(gatt.Service(UUID(service_uuid), list(self.chars.values())))
        if battery_pct is not None:
            level = gatt.Characteristic(UUID(BATTERY_LEVEL), gatt.Characteristic.Properties.READ,
                                        gatt.Characteristic.READABLE, bytes([battery_pct]))
            self.device.add_service(gatt.Service(UUID(BATTERY_SERVICE), [level]))
        self.writes: list[tuple[str, bytes]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return self.device.random_address.to_string(with_type_qualifier=False)

    def _writer(self, uuid: str) -> Callable[[Connection, bytes], None]:
        def write(connection: Connection, value: bytes) -> None:
            self.writes.append((uuid, bytes(value)))
            if self.on_write is not None:
                result = self.on_write(connection, uuid, bytes(value))
                if result is not None:
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        return write

    async def start(self) -> None:
        await self.device.power_on()
        service = bytes(UUID(self.service_uuid))
        self.device.advertising_data = bytes(AdvertisingData([
            (AdvertisingData.FLAGS, bytes([0x06])),
            (AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS if len(service) == 2
             else AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS, service),
            (AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode()),
        ]))
        await self.device.start_advertising(auto_restart=True, advertising_interval_min=20.0)

    def connections(self) -> list[Connection]:
        return list(self.device.connections.values())

    async def notify(self, uuid: str, value: bytes) -> None:
        await self.device.notify_subscribers(self.chars[uuid], value)

    async def indicate(self, uuid: str, value: bytes) -> None:
        await self.device.indicate_subscribers(self.chars[uuid], value)

    def subscribed(self, uuid: str) -> bool:
        handle = self.chars[uuid].handle
        return any(handle in subs for subs in self.device.gatt_server.subscribers.values())

    async def drop(self) -> None:
        """The wearer walks out of range: every link is lost (the device keeps advertising)."""
        for connection in self.connections():
            await connection.disconnect()


def _props(p: gatt.Characteristic.Properties) -> list[Any]:
    names = {
        gatt.Characteristic.Properties.READ: "read",
        gatt.Characteristic.Properties.WRITE: "write",
        gatt.Characteristic.Properties.WRITE_WITHOUT_RESPONSE: "write-without-response",
        gatt.Characteristic.Properties.NOTIFY: "notify",
        gatt.Characteristic.Properties.INDICATE: "indicate",
    }
    return [name for flag, name in names.items() if p & flag]


class BumbleScanner(BaseBleakScanner):
    """bleak scanner backend: the central device's LE scan over the virtual link."""

    def __init__(self, detection_callback: Any, service_uuids: list[str] | None, scanning_mode: str = "active",
                 *, air: Air, **kwargs: Any) -> None:
        super().__init__(detection_callback, service_uuids)
        self.air = air
        self._device: Device | None = None

    def _on_advertisement(self, adv: Advertisement) -> None:
        data = adv.data
        uuids = [_uuid_str(u) for kind in (AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
                                           AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS)
                 for lst in data.get_all(kind) for u in lst]
        name = data.get(AdvertisingData.COMPLETE_LOCAL_NAME)
        if not self.is_allowed_uuid(uuids):
            return
        address = adv.address.to_string(with_type_qualifier=False)
        ad = AdvertisementData(local_name=name if isinstance(name, str) else None, manufacturer_data={},
                               service_data={}, service_uuids=uuids, tx_power=None, rssi=adv.rssi,
                               platform_data=(adv,))
        device = self.create_or_update_device(address, address, ad.local_name, adv, ad)
        self.call_detection_callbacks(device, ad)

    async def start(self) -> None:
        self.seen_devices = {}
        self._device = await self.air.central_device()
        self._device.on("advertisement", self._on_advertisement)
        await self.air.scan(True)

    async def stop(self) -> None:
        if self._device is not None:
            self._device.remove_listener("advertisement", self._on_advertisement)
            self._device = None
            await self.air.scan(False)


def _uuid_str(u: UUID) -> str:
    """bleak's form of a UUID: always 128-bit, lower case."""
    return str(uuid.UUID(bytes=u.to_bytes(force_128=True)[::-1]))


class BumbleClient(BaseBleakClient):
    """bleak client backend: a bumble GATT client on the central device. `mtu` (default 247, as a
    BlueZ or Android central requests) is exchanged after connecting; `mtu=None` keeps ATT's 23."""

    def __init__(self, address_or_ble_device: BLEDevice | str, *, air: Air, mtu: int | None = 247,
                 **kwargs: Any) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=kwargs.get("disconnected_callback"),
                         timeout=kwargs.get("timeout", 10.0))
        self.air = air
        self.mtu = mtu
        self._connection: Connection | None = None
        self._peer: Peer | None = None

    @property
    def mtu_size(self) -> int:
        return 23 if self._connection is None else int(self._connection.att_mtu)

    @property
    def name(self) -> str:
        return self.address

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        central = await self.air.central_device()
        try:
            async with self.air.connect_lock:
                connection = await asyncio.wait_for(central.connect(Address(self.address)), self._timeout)
        except (TimeoutError, Exception) as exc:
            raise BleakError(f"could not connect to {self.address}: {exc!r}") from exc
        self._connection = connection
        connection.on("disconnection", self._on_disconnection)
        peer = Peer(connection)
        self._peer = peer
        if self.mtu is not None:
            await peer.request_mtu(self.mtu)
        collection = BleakGATTServiceCollection()
        for s in await peer.discover_services():
            service = BleakGATTService(s, s.handle, _uuid_str(s.uuid))
            collection.add_service(service)
            for c in await s.discover_characteristics():
                char = BleakGATTCharacteristic(c, c.handle, _uuid_str(c.uuid), _props(c.properties),
                                               lambda: self.mtu_size - 3, service)
                collection.add_characteristic(char)
                for d in await c.discover_descriptors():
                    collection.add_descriptor(BleakGATTDescriptor(d, d.handle, _uuid_str(d.type),
                                                                  char))
        self.services = collection

    def _on_disconnection(self, reason: int) -> None:
        self._connection = None
        self._peer = None
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        if self._connection is not None:
            callback, self._disconnected_callback = self._disconnected_callback, None
            await self._connection.disconnect()
            self._disconnected_callback = callback

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("pairing is not simulated")

    async def unpair(self) -> None:
        raise NotImplementedError("pairing is not simulated")

    def _require(self) -> None:
        if self._connection is None:
            raise BleakError("not connected")

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, **kwargs: Any) -> bytearray:
        self._require()
        return bytearray(await characteristic.obj.read_value())

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, **kwargs: Any) -> bytearray:
        self._require()
        return bytearray(await descriptor.obj.read_value())

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: Any, response: bool) -> None:
        self._require()
        await characteristic.obj.write_value(bytes(data), with_response=response)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        self._require()
        await descriptor.obj.write_value(bytes(data), with_response=True)

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback,
                           **kwargs: Any) -> None:
        self._require()
        prefer_notify = "notify" in characteristic.properties
        await characteristic.obj.subscribe(lambda value: callback(bytearray(value)), prefer_notify=prefer_notify)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._require()
        await characteristic.obj.unsubscribe()
