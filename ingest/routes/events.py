"""POST /v1/events: batches of canonical events from hubs and phones (JSON or binary IMU frames)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from ingest.acceptance import accept, summary
from ingest.bodies import (
    IMU_FRAME_MEDIA_TYPE,
    content_encoding,
    decode_bytes,
    media_type,
    off_loop,
    parse_json,
    read_body,
    split_frames,
)
from ingest.problems import Problem
from ingest.state import gateway, request_id
from ingest.validation import validate_batch
from rtm.contract import Event

router = APIRouter(tags=["upload"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "every event committed to the outbox (relayed to Kafka until stored) or a duplicate"},
    400: {"description": "malformed body", **_PROBLEM},
    401: {"description": "missing or unknown device credential", **_PROBLEM},
    403: {"description": "revoked credential, or events outside the enrolment (by index)", **_PROBLEM},
    413: {"description": "body, decompressed body or event count over the limit", **_PROBLEM},
    415: {"description": "unsupported content type or encoding", **_PROBLEM},
    409: {"description": "an event id accepted earlier with other content (by index); nothing accepted", **_PROBLEM},
    422: {"description": "invalid events, listed by index; nothing accepted", **_PROBLEM},
    429: {"description": "rate limited; see Retry-After", **_PROBLEM},
    503: {"description": "database (or, in broker mode, broker) unavailable; nothing accepted, resend after "
          "Retry-After", **_PROBLEM},
}


def accepted_response(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=202, media_type="application/json")


@router.post(
    "/v1/events",
    summary="Upload a batch of canonical events",
    status_code=202,
    responses=UPLOAD_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": 'JSON `{"events": [...]}` of canonical events (imu_batch, activity_interval, '
            "session_marker) with their `kind`, or one or more concatenated binary IMU frames "
            f"(`{IMU_FRAME_MEDIA_TYPE}`). `Content-Encoding: gzip` accepted.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["events"],
                        "properties": {"events": {"type": "array", "items": {"type": "object"}}},
                    }
                },
                IMU_FRAME_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def upload_events(request: Request) -> Response:
    gw = gateway(request)
    cred = await gw.auth.device(request)
    gw.rate_limit(cred.credential_id)
    mt = media_type(request)
    if mt not in ("application/json", IMU_FRAME_MEDIA_TYPE):
        raise Problem(415, "unsupported-media-type", f"send application/json or {IMU_FRAME_MEDIA_TYPE}")
    cfg = gw.config
    raw = await read_body(request, cfg.max_body_bytes)
    encoding = content_encoding(request)

    def parse() -> list[Event]:
        body = decode_bytes(encoding, raw, cfg.max_decoded_bytes)
        items: list[Any]
        if mt == IMU_FRAME_MEDIA_TYPE:
            items = list(split_frames(body))
        else:
            doc = parse_json(body)
            if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
                raise Problem(400, "malformed-body", 'the body must be a JSON object {"events": [...]}')
            items = doc["events"]
        if not items:
            raise Problem(400, "malformed-body", "the batch holds no events")
        if len(items) > cfg.max_events_per_request:
            raise Problem(
                413,
                "too-many-events",
                f"{len(items)} events exceed {cfg.max_events_per_request} per request",
                extra={"limit_events": cfg.max_events_per_request},
            )
        return validate_batch(items, cred, cfg.clock_skew_s)

    # A compressed body is offloaded whatever its size: what it inflates to is not known yet.
    events = await off_loop(len(raw) if encoding in ("", "identity") else 1 << 62, cfg.offload_bytes, parse)
    results = await accept(gw.store, gw.publisher, gw.relay, cfg, events)
    return accepted_response(summary(results, request_id(request)))
