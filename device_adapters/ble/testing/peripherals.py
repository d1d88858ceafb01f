"""Virtual peripherals playing each profile over bumble (GATT layout, start commands, answers)."""

from __future__ import annotations

import struct

import numpy as np
from bumble.device import Connection

from device_adapters.ble.profiles import movesense, polar_pmd, rsc, thingy52
from device_adapters.ble.profiles.base import FrameError
from device_adapters.ble.testing.virtual import Air, VirtualPeripheral


class Rsc(VirtualPeripheral):
    def __init__(self, air: Air, name: str) -> None:
        super().__init__(air, name, rsc.SERVICE, {rsc.MEASUREMENT: "notify"})


class Thingy(VirtualPeripheral):
    def __init__(self, air: Air, name: str) -> None:
        super().__init__(air, name, thingy52.SERVICE, {
            thingy52.CONFIG: "read,write", thingy52.QUATERNION: "notify",
            thingy52.STEP_COUNTER: "notify", thingy52.RAW: "notify"}, self._write)
        self.motion_hz = 50

    def _write(self, connection: Connection, uuid: str, value: bytes) -> None:
        if uuid == thingy52.CONFIG and len(value) == 9:
            self.motion_hz = struct.unpack(thingy52.CONFIG_FMT, value)[3]


class Polar(VirtualPeripheral):
    """Answers start/stop on the control point (indication) and streams only what was started."""

    def __init__(self, air: Air, name: str) -> None:
        super().__init__(air, name, polar_pmd.SERVICE, {
            polar_pmd.CONTROL_POINT: "write,indicate", polar_pmd.DATA: "notify"}, self._write)
        self.started: dict[int, dict[int, int]] = {}

    async def _write(self, connection: Connection, uuid: str, value: bytes) -> None:
        op, meas = value[0], value[1]
        status = 0
        try:
            if op == polar_pmd.START:
                self.started[meas] = polar_pmd.parse_start_command(value)
            elif op == polar_pmd.STOP:
                self.started.pop(meas, None)
        except FrameError:
            status = 5  # invalid parameter
        await self.indicate(polar_pmd.CONTROL_POINT, bytes([polar_pmd.RESPONSE, op, meas, status, 0]))

    async def stream_acc(self, last_ts_ns: int, samples_mg: np.ndarray) -> None:
        if polar_pmd.ACC in self.started:
            await self.notify(polar_pmd.DATA, polar_pmd.encode_delta_frame(polar_pmd.ACC, last_ts_ns, samples_mg))

    async def stream_gyro(self, last_ts_ns: int, samples: np.ndarray) -> None:
        if polar_pmd.GYRO in self.started:
            await self.notify(polar_pmd.DATA, polar_pmd.encode_delta_frame(polar_pmd.GYRO, last_ts_ns, samples))


class Movesense(VirtualPeripheral):
    def __init__(self, air: Air, name: str) -> None:
        super().__init__(air, name, movesense.SERVICE, {movesense.COMMAND: "write", movesense.DATA: "notify"},
                         self._write)
        self.subscriptions: dict[int, str] = {}

    async def _write(self, connection: Connection, uuid: str, value: bytes) -> None:
        if value[0] == movesense.SUBSCRIBE:
            self.subscriptions[value[1]] = value[2:].decode("ascii")
        elif value[0] == movesense.UNSUBSCRIBE:
            self.subscriptions.pop(value[1], None)
        await self.notify(movesense.DATA, bytes([movesense.RESULT, value[1]]) + struct.pack("<H", 200))

    async def stream_imu6(self, t_ms: int, acc: np.ndarray, gyr: np.ndarray, split: bool = False) -> None:
        """One data packet per subscription; with `split`, a packet longer than the link's ATT MTU - 3
        goes as two parts (DATA, then DATA_PART2), as the firmware sends long packets."""
        max_len = min((c.att_mtu for c in self.connections()), default=23) - 3
        for ref in self.subscriptions:
            packet = movesense.encode_imu6(ref, t_ms, acc, gyr)
            for part in movesense.split_packet(packet, max_len) if split else [packet]:
                await self.notify(movesense.DATA, part)
