"""Reading request bodies within limits: size on the wire (413), gzip with a cap on the
decompressed size (413: no gzip bombs), and splitting a stream of concatenated IMU frames."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from starlette.requests import ClientDisconnect, Request

from ingest.problems import Problem
from rtm.contract.codec import DecodeError, frame_length

IMU_FRAME_MEDIA_TYPE = "application/vnd.rtm.imu-frame"
T = TypeVar("T")


async def off_loop(size: int, threshold: int, work: Callable[[], T]) -> T:
    """Run CPU-bound body work (gunzip, JSON parsing, validation) in a worker thread when the body
    is large, so that one big or hostile request cannot stall every other request (/healthz too)."""
    if size >= threshold:
        return await asyncio.to_thread(work)
    return work()


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise Problem(400, "malformed-body", "Content-Length is not a number") from None
        if size > max_bytes:
            raise Problem(
                413,
                "payload-too-large",
                f"{size} bytes exceed the limit of {max_bytes}",
                extra={"limit_bytes": max_bytes},
            )
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_bytes:
                raise Problem(
                    413,
                    "payload-too-large",
                    f"the body exceeds the limit of {max_bytes} bytes",
                    extra={"limit_bytes": max_bytes},
                )
            chunks.append(chunk)
    except ClientDisconnect:
        raise Problem(400, "malformed-body", "the client disconnected before the body was complete") from None
    return b"".join(chunks)


def content_encoding(request: Request) -> str:
    return request.headers.get("content-encoding", "identity").strip().lower()


def decode_content(request: Request, body: bytes, max_decoded: int) -> bytes:
    return decode_bytes(content_encoding(request), body, max_decoded)


def decode_bytes(encoding: str, body: bytes, max_decoded: int) -> bytes:
    """Gunzip within `max_decoded` bytes: a bomb is cut off after that much work, not inflated."""
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise Problem(415, "unsupported-media-type", f"Content-Encoding {encoding!r}: only gzip is accepted")
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, max_decoded + 1)
    except zlib.error as exc:
        raise Problem(400, "malformed-body", f"invalid gzip data ({exc})") from None
    if len(out) > max_decoded or d.unconsumed_tail:
        raise Problem(
            413,
            "payload-too-large",
            f"the decompressed body exceeds {max_decoded} bytes",
            extra={"limit_bytes": max_decoded},
        )
    if not d.eof:
        raise Problem(400, "malformed-body", "truncated gzip data")
    return out


def parse_json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "malformed-body", f"invalid JSON ({exc})") from None


def split_frames(data: bytes) -> list[bytes]:
    """Cut a body of one or more concatenated IMU frames into frames (each is then decoded by the
    contract's codec). A frame's length follows from its header: n samples x 24 bytes (+ 4 with
    per-sample offsets)."""
    frames: list[bytes] = []
    pos = 0
    while pos < len(data):
        try:
            length = frame_length(data, pos)
        except DecodeError as exc:
            raise Problem(400, "malformed-body", f"frame {len(frames)}: {exc.detail}") from None
        frames.append(data[pos : pos + length])
        pos += length
    if not frames:
        raise Problem(400, "malformed-body", "no IMU frame in the body")
    return frames
