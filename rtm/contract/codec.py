"""Wire encoding of canonical events for Kafka values and the raw archive.

IMU batches use a compact binary frame (a small JSON header, then the float32 columns as raw
little-endian bytes): an order of magnitude smaller and faster than JSON lists of floats, and
exactly round-trippable. Every other event is one JSON object with its `kind`.

    frame := b"RTMI" | u8 version | u32 header_len (LE) | header (JSON) | acc f32[n*3] | gyr f32[n*3]
             | [t_offsets_us i32[n]]
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from rtm.contract.activity import ActivityInterval
from rtm.contract.base import Event, violation_code
from rtm.contract.clinical import DeviceAssignment, SessionMarker, TherapistTimeEntry, TimezoneChange
from rtm.contract.imu import ImuBatch

IMU_MAGIC = b"RTMI"
IMU_FRAME_VERSION = 1
_PREFIX = struct.Struct("<4sBI")

EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (ImuBatch, ActivityInterval, SessionMarker, DeviceAssignment, TimezoneChange, TherapistTimeEntry)
}


def content_digest(value: bytes) -> bytes:
    """BLAKE2b-128 of an encoded event: what the gateway's dedup record and outbox keep, and what
    the sink matches when it marks an outbox row stored (same id, same content)."""
    return hashlib.blake2b(value, digest_size=16).digest()


_REASON_CODES = {"unknown_kind": "unknown-kind", "malformed": "malformed"}


class DecodeError(ValueError):
    """Bytes that are not a valid canonical event. `reason` says which step failed (malformed,
    unknown_kind, unsupported_version, invalid); `code` is the item-level code a client gets."""

    def __init__(self, reason: str, detail: str, code: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.code = code or _REASON_CODES.get(reason, "invalid")


def encode(event: Event) -> bytes:
    if isinstance(event, ImuBatch):
        return encode_imu(event)
    body = event.model_dump(mode="json")
    body["kind"] = event.kind
    return orjson.dumps(body)


def encode_imu(batch: ImuBatch) -> bytes:
    header = batch.model_dump(mode="json", exclude={"acc", "gyr", "t_offsets_us"})
    header["n"] = batch.n_samples
    header["offsets"] = batch.t_offsets_us is not None
    head = orjson.dumps(header)
    parts = [
        _PREFIX.pack(IMU_MAGIC, IMU_FRAME_VERSION, len(head)),
        head,
        np.ascontiguousarray(batch.acc, dtype="<f4").tobytes(),
        np.ascontiguousarray(batch.gyr, dtype="<f4").tobytes(),
    ]
    if batch.t_offsets_us is not None:
        parts.append(np.ascontiguousarray(batch.t_offsets_us, dtype="<i4").tobytes())
    return b"".join(parts)


def decode(data: bytes) -> Event:
    """Parse and validate one event; raise DecodeError naming what is wrong."""
    if data[:4] == IMU_MAGIC:
        return decode_imu(data)
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("malformed", f"neither an IMU frame nor JSON ({exc})") from None
    if not isinstance(body, dict):
        raise DecodeError("malformed", "a JSON event must be an object")
    return from_dict(body)


def from_dict(body: dict[str, Any]) -> Event:
    kind = body.pop("kind", None)
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise DecodeError("unknown_kind", f"kind {kind!r} is not one of {sorted(EVENT_TYPES)}")
    try:
        return cls.model_validate(body)
    except ValidationError as exc:
        raise DecodeError("invalid", _summarise(exc), violation_code(exc)) from None


def frame_length(data: bytes, pos: int = 0) -> int:
    """Length of the IMU frame starting at `pos` (so that concatenated frames can be cut apart)."""
    if len(data) - pos < _PREFIX.size:
        raise DecodeError("malformed", "truncated frame prefix")
    magic, version, head_len = _PREFIX.unpack_from(data, pos)
    if magic != IMU_MAGIC:
        raise DecodeError("malformed", "not an IMU frame (bad magic)")
    if version != IMU_FRAME_VERSION:
        raise DecodeError("unsupported_version", f"IMU frame version {version}")
    head_start = pos + _PREFIX.size
    if head_start + head_len > len(data):
        raise DecodeError("malformed", "truncated frame header")
    try:
        header = orjson.loads(memoryview(data)[head_start : head_start + head_len])
        n, offsets = _sample_count(header["n"]), header["offsets"]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError) as exc:
        raise DecodeError("malformed", f"bad frame header ({exc})") from None
    if n < 0 or not isinstance(offsets, bool):
        raise DecodeError("malformed", "bad frame header (n or offsets)")
    end = head_start + head_len + n * 24 + (n * 4 if offsets else 0)
    if end > len(data):
        raise DecodeError("malformed", "truncated sample data")
    return int(end - pos)


def _sample_count(value: Any) -> int:
    # Strict: 100.7 or "100" is a broken header, not something to round.
    if type(value) is not int:
        raise TypeError(f"n must be an integer, not {value!r}")
    return value


def decode_imu(data: bytes) -> ImuBatch:
    if len(data) < _PREFIX.size:
        raise DecodeError("malformed", "IMU frame shorter than its prefix")
    _, version, head_len = _PREFIX.unpack_from(data)
    if version != IMU_FRAME_VERSION:
        raise DecodeError("unsupported_version", f"IMU frame version {version}")
    start = _PREFIX.size
    try:
        header = orjson.loads(data[start : start + head_len])
        n = _sample_count(header.pop("n"))
        has_offsets = header.pop("offsets")
        if not isinstance(has_offsets, bool):
            raise TypeError("offsets must be true or false")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DecodeError("malformed", f"IMU frame header: {exc}") from None
    body = memoryview(data)[start + head_len :]
    expected = n * 24 + (n * 4 if has_offsets else 0)
    if n < 0 or len(body) != expected:
        raise DecodeError("malformed", f"IMU frame holds {len(body)} payload bytes, expected {expected} for n={n}")
    acc = np.frombuffer(body, dtype="<f4", count=n * 3).reshape(n, 3)
    gyr = np.frombuffer(body, dtype="<f4", count=n * 3, offset=n * 12).reshape(n, 3)
    header["acc"] = acc
    header["gyr"] = gyr
    header["t_offsets_us"] = np.frombuffer(body, dtype="<i4", count=n, offset=n * 24) if has_offsets else None
    try:
        return ImuBatch.model_validate(header)
    except ValidationError as exc:
        raise DecodeError("invalid", _summarise(exc), violation_code(exc)) from None


def _summarise(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg']}" for err in exc.errors()[:5]
    )
