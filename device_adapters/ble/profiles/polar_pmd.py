"""Polar Measurement Data (PMD) service, as documented in Polar's public BLE SDK
(polar-ble-sdk, `technical_documentation/` and the `pmd` package of its Android library).

Service FB005C80-02E7-F387-1CAD-8ACD2D8DF0C8; control point ...C81 (write + indicate), data ...C82
(notify). A start command is [0x02, measurement type, (setting type, count=1, u16 value)...] with
setting types 0 sample rate, 1 resolution, 2 range; stop is [0x03, measurement type]. The control
point answers [0xF0, op code, measurement type, status (0 = success), more, parameters...].

A data notification is [measurement type u8][timestamp u64 ns][frame type u8][samples]. The
timestamp is that of the LAST sample, in ns since 2000-01-01T00:00:00 (the device's clock), so
sample times are reconstructed backwards at the configured rate. Frame type bit 7 marks a
delta-compressed frame: a reference sample (one signed value per channel, resolution bits rounded
up to bytes), then blocks of [delta bit width u8][sample count u8][count x channels signed deltas,
bit-packed least significant bit first]. Uncompressed accelerometer frame types 0, 1, 2 carry
1, 2, 3 signed bytes per axis. Accelerometer values are in mG and gyroscope values in deg/s, each
scaled by the stream's FACTOR setting when the device reports one (1.0 otherwise); which devices
report which factor is not in the public documentation, so it is a constructor argument here.
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

SERVICE = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
CONTROL_POINT = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
DATA = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"

ACC, GYRO = 0x02, 0x05
START, STOP, RESPONSE = 0x02, 0x03, 0xF0
SAMPLE_RATE, RESOLUTION, RANGE = 0x00, 0x01, 0x02
COMPRESSED = 0x80
HEADER = 10  # type u8 + timestamp u64 + frame type u8
CHANNELS = 3
MAX_DELTA_BITS = 32  # wider than any sample resolution: a corrupt width


def start_command(meas_type: int, sample_rate: int, resolution: int = 16, range_: int | None = None) -> bytes:
    out = struct.pack("<BBBBH BBH", START, meas_type, SAMPLE_RATE, 1, sample_rate, RESOLUTION, 1, resolution)
    if range_ is not None:
        out += struct.pack("<BBH", RANGE, 1, range_)
    return out


def parse_start_command(data: bytes) -> dict[int, int]:
    """The settings of a start command (what a peripheral does on receiving one)."""
    need(data, 2, "PMD start command")
    settings: dict[int, int] = {}
    off = 2
    while off + 4 <= len(data):
        kind, count = data[off], data[off + 1]
        if count != 1:
            raise FrameError(f"corrupt: PMD setting {kind} has {count} values")
        settings[kind] = struct.unpack_from("<H", data, off + 2)[0]
        off += 4
    if off != len(data):
        raise FrameError("truncated: PMD start command ends inside a setting")
    return settings


def encode_raw_frame(meas_type: int, last_ts_ns: int, samples: np.ndarray, width: int = 2) -> bytes:
    """An uncompressed frame (frame type width-1) as a sensor sends it."""
    le = np.asarray(samples, dtype="<i4").reshape(-1).astype("<i4").view(np.uint8).reshape(-1, 4)[:, :width]
    return struct.pack("<BQB", meas_type, last_ts_ns, width - 1) + le.tobytes()


def encode_delta_frame(meas_type: int, last_ts_ns: int, samples: np.ndarray, block: int = 8) -> bytes:
    """A delta-compressed frame (frame type 0x80, 16-bit reference) as a sensor sends it."""
    s = np.asarray(samples, dtype=np.int64).reshape(-1, CHANNELS)
    out = bytearray(struct.pack("<BQB", meas_type, last_ts_ns, COMPRESSED))
    out += s[0].astype("<i2").tobytes()
    deltas = np.diff(s, axis=0)
    for i in range(0, deltas.shape[0], block):
        d = deltas[i:i + block]
        # the narrowest two's-complement width holding every delta of the block
        width = max(1, int(np.max(np.where(d < 0, -d - 1, d))).bit_length() + 1)
        out += bytes([width, d.shape[0]])
        mask = (1 << width) - 1
        bits = ((d.reshape(-1, 1) & mask) >> np.arange(width)) & 1
        out += np.packbits(bits.reshape(-1).astype(np.uint8), bitorder="little").tobytes()
    return bytes(out)


def _signed(values: np.ndarray, bits: int) -> np.ndarray:
    half = np.int64(1) << (bits - 1)
    return np.where(values >= half, values - (half << 1), values)


def decode_raw_samples(payload: bytes, width: int) -> np.ndarray:
    if len(payload) == 0 or len(payload) % (width * CHANNELS):
        raise FrameError(f"length: {len(payload)} sample bytes are not whole {width}-byte x3 samples")
    b = np.frombuffer(payload, dtype=np.uint8).reshape(-1, width).astype(np.int64)
    raw = (b << (8 * np.arange(width, dtype=np.int64))).sum(axis=1)
    return _signed(raw, 8 * width).reshape(-1, CHANNELS)


def decode_delta_samples(payload: bytes, resolution: int = 16) -> np.ndarray:
    """All samples of a delta-compressed frame: the reference, then its cumulative deltas."""
    ref_bytes = (resolution + 7) // 8
    need(payload, ref_bytes * CHANNELS, "PMD delta reference sample")
    ref_raw = np.frombuffer(payload[: ref_bytes * CHANNELS], dtype=np.uint8).reshape(CHANNELS, ref_bytes)
    ref = _signed((ref_raw.astype(np.int64) << (8 * np.arange(ref_bytes, dtype=np.int64))).sum(axis=1), resolution)
    parts = [ref.reshape(1, CHANNELS)]
    off = ref_bytes * CHANNELS
    while off < len(payload):
        need(payload[off:], 2, "PMD delta block header")
        width, count = payload[off], payload[off + 1]
        off += 2
        if width > MAX_DELTA_BITS or count == 0:
            raise FrameError(f"corrupt: PMD delta block of {count} samples at {width} bits")
        nbits = width * count * CHANNELS
        nbytes = (nbits + 7) // 8
        need(payload[off:], nbytes, "PMD delta block")
        if width == 0:
            deltas = np.zeros((count, CHANNELS), dtype=np.int64)
        else:
            bits = np.unpackbits(np.frombuffer(payload[off:off + nbytes], dtype=np.uint8), bitorder="little")
            words = bits[:nbits].reshape(-1, width).astype(np.int64) << np.arange(width, dtype=np.int64)
            deltas = _signed(words.sum(axis=1), width).reshape(count, CHANNELS)
        parts.append(deltas)
        off += nbytes
    return np.cumsum(np.concatenate(parts), axis=0)


def sample_times_ns(last_ts_ns: int, n: int, rate_hz: float) -> np.ndarray:
    """Sample i of n at last - (n-1-i)/rate: the timestamp belongs to the last sample."""
    back = np.round((n - 1 - np.arange(n)) * (1e9 / rate_hz)).astype(np.int64)
    return np.int64(last_ts_ns) - back


class PmdDecoder(Decoder):
    def __init__(self, rates: dict[int, int], factors: dict[int, float] | None = None) -> None:
        super().__init__()
        self.rates = rates
        self.factors = factors or {}

    def decode(self, char_uuid: str, data: bytes) -> list[Reading]:
        if char_uuid == CONTROL_POINT:
            need(data, 4, "PMD control point response")
            if data[0] != RESPONSE:
                raise FrameError(f"corrupt: PMD control point answer starts 0x{data[0]:02x}")
            return [ConfigReading({"op": data[1], "measurement": data[2], "status": data[3]})]
        if char_uuid != DATA:
            raise FrameError(f"unknown characteristic: {char_uuid}")
        need(data, HEADER + 1, "PMD data frame")
        meas, ts, frame_type = struct.unpack_from("<BQB", data)
        if meas not in (ACC, GYRO):
            raise FrameError(f"unsupported: PMD measurement type {meas}")
        rate = self.rates.get(meas)
        if rate is None:
            raise FrameError(f"unexpected: PMD measurement type {meas} was not started")
        payload = data[HEADER:]
        if frame_type & COMPRESSED:
            if frame_type & 0x7F:
                raise FrameError(f"unsupported: PMD compressed frame type 0x{frame_type:02x}")
            samples = decode_delta_samples(payload)
        else:
            if frame_type > 2:
                raise FrameError(f"unsupported: PMD frame type 0x{frame_type:02x}")
            samples = decode_raw_samples(payload, frame_type + 1)
        factor = self.factors.get(meas, 1.0)
        times = sample_times_ns(ts, samples.shape[0], float(rate))
        if meas == ACC:
            acc = (samples * (factor / 1000.0)).astype(np.float32)  # mG -> g
            return [ImuReading("acc", float(rate), acc, None, "g", "deg/s", times)]
        gyr = (samples * factor).astype(np.float32)
        return [ImuReading("gyro", float(rate), None, gyr, "g", "deg/s", times)]


class PolarPmd(Profile):
    name = "polar-pmd"
    vendor = "polar"
    service_uuid = SERVICE
    notify_uuids = (CONTROL_POINT, DATA)

    def __init__(self, acc_hz: int = 52, gyro_hz: int | None = None, acc_range_g: int = 8,
                 factors: dict[int, float] | None = None) -> None:
        self.rates = {ACC: acc_hz} | ({GYRO: gyro_hz} if gyro_hz else {})
        self.acc_range_g = acc_range_g
        self.factors = factors

    def decoder(self) -> Decoder:
        return PmdDecoder(self.rates, self.factors)

    def start_commands(self) -> list[Command]:
        cmds = [Command(CONTROL_POINT, start_command(ACC, self.rates[ACC], 16, self.acc_range_g))]
        if GYRO in self.rates:
            cmds.append(Command(CONTROL_POINT, start_command(GYRO, self.rates[GYRO], 16, 2000)))
        return cmds

    def stop_commands(self) -> list[Command]:
        return [Command(CONTROL_POINT, bytes([STOP, m])) for m in self.rates]
