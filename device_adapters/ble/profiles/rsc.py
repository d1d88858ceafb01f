"""Bluetooth SIG Running Speed and Cadence service (0x1814), RSC Measurement (0x2A53).

Layout (RSC Service spec v1.0, characteristic 0x2A53), little-endian: flags u8 (bit 0 stride
length present, bit 1 total distance present, bit 2 running rather than walking); speed u16 in
1/256 m/s; cadence u8 in steps per minute; [stride length u16 in 1/100 m]; [total distance u32
in 1/10 m]. The measurement carries no timestamp and no step count: the hub integrates cadence
over the time between notifications.
"""

from __future__ import annotations

import struct

from device_adapters.ble.profiles.base import (
    CadenceReading,
    Decoder,
    FrameError,
    Profile,
    Reading,
    need,
    sig_uuid,
)

SERVICE = sig_uuid(0x1814)
MEASUREMENT = sig_uuid(0x2A53)
STRIDE, DISTANCE, RUNNING = 0x01, 0x02, 0x04


def encode(speed_mps: float, cadence_spm: int, stride_m: float | None = None,
           total_distance_m: float | None = None, running: bool = False) -> bytes:
    """A measurement as a sensor would send it (used by the virtual peripherals and tests)."""
    flags = (STRIDE if stride_m is not None else 0) | (DISTANCE if total_distance_m is not None else 0)
    flags |= RUNNING if running else 0
    out = struct.pack("<BHB", flags, round(speed_mps * 256), cadence_spm)
    if stride_m is not None:
        out += struct.pack("<H", round(stride_m * 100))
    if total_distance_m is not None:
        out += struct.pack("<I", round(total_distance_m * 10))
    return out


def decode_measurement(data: bytes) -> CadenceReading:
    need(data, 4, "RSC measurement")
    flags, speed, cadence = struct.unpack_from("<BHB", data)
    if flags & 0xF8:
        raise FrameError(f"corrupt: RSC flags 0x{flags:02x} set reserved bits")
    size = 4 + (2 if flags & STRIDE else 0) + (4 if flags & DISTANCE else 0)
    if len(data) != size:
        raise FrameError(f"length: RSC flags 0x{flags:02x} imply {size} bytes, got {len(data)}")
    off = 4
    stride = distance = None
    if flags & STRIDE:
        stride = struct.unpack_from("<H", data, off)[0] / 100.0
        off += 2
    if flags & DISTANCE:
        distance = struct.unpack_from("<I", data, off)[0] / 10.0
    return CadenceReading(speed / 256.0, cadence, stride, distance, bool(flags & RUNNING))


class RscDecoder(Decoder):
    def decode(self, char_uuid: str, data: bytes) -> list[Reading]:
        if char_uuid != MEASUREMENT:
            raise FrameError(f"unknown characteristic: {char_uuid}")
        return [decode_measurement(data)]


class RunningSpeedCadence(Profile):
    name = "sig-rsc"
    vendor = "bluetooth-sig"
    service_uuid = SERVICE
    notify_uuids = (MEASUREMENT,)

    def decoder(self) -> Decoder:
        return RscDecoder()
