"""Movesense "GATT SensorData" protocol (the open-source `gatt_sensordata_app` of the Movesense
device library): service 34802252-7185-4D5D-B431-630E7050E8F0, command characteristic
34800001-... (write), data characteristic 34800002-... (notify).

Commands are [command u8][client reference u8][argument]: 0 hello, 1 subscribe (argument: the
resource path in ASCII, e.g. "/Meas/IMU6/52"), 2 unsubscribe. Notifications are
[response u8][reference u8][payload]: 1 command result, 2 data, 3 second part of a long data
packet. For /Meas/IMU6/{rate} the data payload is the whiteboard IMU6Data serialised by the app:
timestamp u32 (ms, device clock, first sample), then the n accelerometer samples (3 x f32, m/s^2),
then the n gyroscope samples (3 x f32, deg/s); n follows from the length (the sample count per
notification is the firmware's choice and is not documented).

Two-part packets: a data packet longer than one notification (e.g. IMU9, or IMU6 at high rates,
against the negotiated MTU) is sent as `[2, ref, first bytes]` then `[3, ref, the rest]`; the
packet is the first notification followed by the second one's payload (after its two header
bytes), as the protocol's reference client reassembles it. A data notification whose length is
not whole samples is held as a first part; the next notification must be its second part (same
reference), otherwise the held part is counted `truncated` (a notification cut at the MTU looks
the same). Once a split was seen, a first part of that length is held even when it happens to be
whole samples. Limit: the first part of the very first split packet, if it happens to be exactly
whole samples (6 + 24k bytes), is taken as a packet of its own and its second part is counted
`unexpected`; the firmware cuts at MTU - 3, which is not of that form for the usual MTUs
(23, 158, 185, 247, 517).
"""

from __future__ import annotations

import struct

import numpy as np

from device_adapters.ble.profiles.base import (
    Command,
    ConfigReading,
    Decoder,
    FrameError,
    ImuReading,
    Profile,
    Reading,
    need,
)

SERVICE = "34802252-7185-4d5d-b431-630e7050e8f0"
COMMAND = "34800001-7185-4d5d-b431-630e7050e8f0"
DATA = "34800002-7185-4d5d-b431-630e7050e8f0"
HELLO, SUBSCRIBE, UNSUBSCRIBE = 0, 1, 2
RESULT, DATA_MSG, DATA_PART2 = 1, 2, 3
IMU6_RATES = (13, 26, 52, 104, 208, 416, 833, 1666)  # the rates /Meas/IMU6 accepts
SAMPLE_BYTES = 2 * 3 * 4  # acc + gyr, three f32 each


def subscribe_command(ref: int, path: str) -> bytes:
    return bytes([SUBSCRIBE, ref]) + path.encode("ascii")


def encode_imu6(ref: int, t_ms: int, acc: np.ndarray, gyr: np.ndarray) -> bytes:
    return (bytes([DATA_MSG, ref]) + struct.pack("<I", t_ms) + np.asarray(acc, "<f4").tobytes()
            + np.asarray(gyr, "<f4").tobytes())


def split_packet(packet: bytes, max_len: int) -> list[bytes]:
    """A data packet as the firmware sends it in notifications of at most `max_len` bytes (ATT MTU - 3):
    whole, or a first part and a second part `[3, ref, rest]`."""
    if len(packet) <= max_len:
        return [packet]
    rest = packet[max_len:]
    if len(rest) + 2 > max_len:
        raise ValueError(f"a {len(packet)}-byte packet does not fit two notifications of {max_len} bytes")
    return [packet[:max_len], bytes([DATA_PART2, packet[1]]) + rest]


class MovesenseDecoder(Decoder):
    def __init__(self, ref: int, rate_hz: int) -> None:
        super().__init__()
        self.ref = ref
        self.rate_hz = rate_hz
        self.pending: bytes | None = None  # a first part waiting for its second
        self.split_len: int | None = None  # the firmware's first-part length, once a split was seen

    def decode(self, char_uuid: str, data: bytes) -> list[Reading]:
        if char_uuid != DATA:
            raise FrameError(f"unknown characteristic: {char_uuid}")
        held, self.pending = self.pending, None
        if held is not None and not (len(data) >= 2 and data[0] == DATA_PART2 and data[1] == self.ref):
            self.stats.bad["truncated"] += 1  # its second part never came
        need(data, 2, "Movesense notification")
        kind, ref = data[0], data[1]
        if kind == RESULT:
            return [ConfigReading({"reference": ref, "result": data[2:].hex()})]
        if kind not in (DATA_MSG, DATA_PART2):
            raise FrameError(f"corrupt: Movesense response type {kind}")
        if ref != self.ref:
            raise FrameError(f"unexpected: Movesense data for reference {ref}, subscribed {self.ref}")
        if kind == DATA_PART2:
            if held is None:
                raise FrameError("unexpected: Movesense second part without a first")
            self.split_len = len(held)
            return self._imu(held + data[2:])
        if len(data) == self.split_len or (len(data) < 6 + SAMPLE_BYTES or (len(data) - 6) % SAMPLE_BYTES):
            self.pending = data
            return []
        return self._imu(data)

    def _imu(self, data: bytes) -> list[Reading]:
        body = data[6:]
        need(data, 6 + SAMPLE_BYTES, "Movesense IMU6 data")
        if len(body) % SAMPLE_BYTES:
            raise FrameError(f"length: Movesense IMU6 body of {len(body)} bytes is not whole samples")
        t_ms = struct.unpack_from("<I", data, 2)[0]
        v = np.frombuffer(body, dtype="<f4").reshape(2, -1, 3)
        if not np.isfinite(v).all():
            raise FrameError("corrupt: Movesense IMU6 sample is not finite")
        n = v.shape[1]
        t0 = np.int64(t_ms) * 1_000_000
        times = t0 + np.round(np.arange(n) * (1e9 / self.rate_hz)).astype(np.int64)
        return [ImuReading("imu6", float(self.rate_hz), v[0].astype(np.float32), v[1].astype(np.float32),
                           "m/s^2", "deg/s", times)]


class MovesenseImu(Profile):
    name = "movesense-imu6"
    vendor = "movesense"
    service_uuid = SERVICE
    notify_uuids = (DATA,)

    def __init__(self, rate_hz: int = 52, ref: int = 99) -> None:
        if rate_hz not in IMU6_RATES:
            raise ValueError(f"Movesense IMU6 rate {rate_hz} Hz is not one of {IMU6_RATES}")
        self.rate_hz = rate_hz
        self.ref = ref

    def decoder(self) -> Decoder:
        return MovesenseDecoder(self.ref, self.rate_hz)

    def start_commands(self) -> list[Command]:
        return [Command(COMMAND, subscribe_command(self.ref, f"/Meas/IMU6/{self.rate_hz}"))]

    def stop_commands(self) -> list[Command]:
        return [Command(COMMAND, bytes([UNSUBSCRIBE, self.ref]))]
