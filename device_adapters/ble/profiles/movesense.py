"""Movesense "GATT SensorData" protocol (the open-source `gatt_sensordata_app` of the Movesense
device library): service 34802252-7185-4D5D-B431-630E7050E8F0, command characteristic
34800001-... (write), data characteristic 34800002-... (notify).

Commands are [command u8][client reference u8][argument]: 0 hello, 1 subscribe (argument: the
resource path in ASCII, e.g. "/Meas/IMU6/52"), 2 unsubscribe. Notifications are
[response u8][reference u8][payload]: 1 command result, 2 data, 3 second part of a long data
packet. For /Meas/IMU6/{rate} the data payload is the whiteboard IMU6Data serialised by the app:
timestamp u32 (ms, device clock, first sample), then the n accelerometer samples (3 x f32, m/s^2),
then the n gyroscope samples (3 x f32, deg/s); n follows from the length (the sample count per
notification is the firmware's choice and is not documented). Packets split in two parts
(response 3) are not produced at the rates used here and are counted as unsupported.
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


class MovesenseDecoder(Decoder):
    def __init__(self, ref: int, rate_hz: int) -> None:
        super().__init__()
        self.ref = ref
        self.rate_hz = rate_hz

    def decode(self, char_uuid: str, data: bytes) -> list[Reading]:
        if char_uuid != DATA:
            raise FrameError(f"unknown characteristic: {char_uuid}")
        need(data, 2, "Movesense notification")
        kind, ref = data[0], data[1]
        if kind == RESULT:
            return [ConfigReading({"reference": ref, "result": data[2:].hex()})]
        if kind == DATA_PART2:
            raise FrameError("unsupported: Movesense two-part data packet")
        if kind != DATA_MSG:
            raise FrameError(f"corrupt: Movesense response type {kind}")
        if ref != self.ref:
            raise FrameError(f"unexpected: Movesense data for reference {ref}, subscribed {self.ref}")
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
