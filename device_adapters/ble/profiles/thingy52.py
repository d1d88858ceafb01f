"""Nordic Thingy:52 motion service (firmware v2.x, `ble_tms`): base UUID
EF68xxxx-9B35-4933-9B10-52FFA9740042, service 0x0400.

Characteristics decoded here (little-endian, as in the firmware's `ble_tms.h` structs):
- 0x0401 configuration: step counter interval u16 ms, temperature compensation interval u16 ms,
  magnetometer compensation interval u16 ms, motion processing frequency u16 Hz, wake on motion u8;
- 0x0404 quaternion: w, x, y, z as i32 fixed point Q2.30;
- 0x0405 step counter: steps u32, time u32 ms (the device's own clock since boot);
- 0x0406 raw motion: accelerometer i16 x3 in Q6.10 g, gyroscope i16 x3 in Q11.5 deg/s,
  compass i16 x3 in Q12.4 µT. Raw notifications carry no timestamp: one sample per notification at
  the configured motion processing frequency.
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
    QuaternionReading,
    Reading,
    StepCountReading,
    need,
)


def thingy_uuid(short: int) -> str:
    return f"ef68{short:04x}-9b35-4933-9b10-52ffa9740042"


SERVICE = thingy_uuid(0x0400)
CONFIG = thingy_uuid(0x0401)
QUATERNION = thingy_uuid(0x0404)
STEP_COUNTER = thingy_uuid(0x0405)
RAW = thingy_uuid(0x0406)
CONFIG_FMT = "<HHHHB"
# The firmware's accepted motion processing frequencies (BLE_TMS_CONFIG_MPUF_MIN/MAX).
MPU_FREQ_RANGE = (5, 200)


def encode_config(step_interval_ms: int = 1000, temp_interval_ms: int = 500, compass_interval_ms: int = 500,
                  motion_hz: int = 50, wake_on_motion: int = 1) -> bytes:
    return struct.pack(CONFIG_FMT, step_interval_ms, temp_interval_ms, compass_interval_ms, motion_hz, wake_on_motion)


def encode_raw(acc_g: tuple[float, float, float], gyr_dps: tuple[float, float, float],
               compass_ut: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> bytes:
    vals = [round(v * 1024) for v in acc_g] + [round(v * 32) for v in gyr_dps] + [round(v * 16) for v in compass_ut]
    return struct.pack("<9h", *vals)


class ThingyDecoder(Decoder):
    def __init__(self, motion_hz: int = 50) -> None:
        super().__init__()
        self.motion_hz = motion_hz

    def decode(self, char_uuid: str, data: bytes) -> list[Reading]:
        if char_uuid == RAW:
            need(data, 18, "Thingy raw motion")
            if len(data) != 18:
                raise FrameError(f"length: Thingy raw motion is 18 bytes, got {len(data)}")
            v = np.frombuffer(data, dtype="<i2").astype(np.float32)
            acc = (v[0:3] / np.float32(1 << 10)).reshape(1, 3)
            gyr = (v[3:6] / np.float32(1 << 5)).reshape(1, 3)
            return [ImuReading("raw", float(self.motion_hz), acc, gyr, "g", "deg/s")]
        if char_uuid == STEP_COUNTER:
            if len(data) != 8:
                raise FrameError(f"length: Thingy step counter is 8 bytes, got {len(data)}")
            steps, t_ms = struct.unpack("<II", data)
            return [StepCountReading(steps, t_ms)]
        if char_uuid == QUATERNION:
            if len(data) != 16:
                raise FrameError(f"length: Thingy quaternion is 16 bytes, got {len(data)}")
            q = struct.unpack("<4i", data)
            w, x, y, z = (c / float(1 << 30) for c in q)
            return [QuaternionReading((w, x, y, z))]
        if char_uuid == CONFIG:
            if len(data) != struct.calcsize(CONFIG_FMT):
                raise FrameError(f"length: Thingy configuration is 9 bytes, got {len(data)}")
            step, temp, comp, hz, wom = struct.unpack(CONFIG_FMT, data)
            if not MPU_FREQ_RANGE[0] <= hz <= MPU_FREQ_RANGE[1]:
                raise FrameError(f"corrupt: Thingy motion frequency {hz} Hz outside {MPU_FREQ_RANGE}")
            self.motion_hz = hz
            return [ConfigReading({"step_interval_ms": step, "temp_interval_ms": temp,
                                   "compass_interval_ms": comp, "motion_hz": hz, "wake_on_motion": wom})]
        raise FrameError(f"unknown characteristic: {char_uuid}")


class Thingy52Motion(Profile):
    name = "nordic-thingy52"
    vendor = "nordic"
    service_uuid = SERVICE
    notify_uuids = (RAW, STEP_COUNTER)

    def __init__(self, motion_hz: int = 50, step_interval_ms: int = 1000) -> None:
        self.motion_hz = motion_hz
        self.step_interval_ms = step_interval_ms

    def decoder(self) -> Decoder:
        return ThingyDecoder(self.motion_hz)

    def start_commands(self) -> list[Command]:
        # Writing the configuration sets the rates the decoder assumes; the other fields keep defaults.
        return [Command(CONFIG, encode_config(self.step_interval_ms, motion_hz=self.motion_hz))]
