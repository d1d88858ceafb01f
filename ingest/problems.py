"""RFC 9457 problem details: every error is `application/problem+json` with a stable `code`,
the request id, and, for batches, the failing events by index."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.responses import Response

from rtm.errors import CodedError

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:rtm:problem:"

TITLES: dict[str, str] = {
    "malformed-body": "The request body could not be parsed",
    "unsupported-media-type": "Unsupported content type or encoding",
    "payload-too-large": "The request body is too large",
    "too-many-events": "Too many events in one request",
    "invalid-events": "One or more events are invalid; nothing was accepted",
    "forbidden-events": "One or more events are outside this device's enrolment; nothing was accepted",
    "unauthenticated": "Missing or unknown credential",
    "credential-revoked": "The credential has been revoked",
    "forbidden": "Not allowed for this credential",
    "rate-limited": "Too many requests",
    "broker-unavailable": "The event broker is unavailable; nothing was lost, retry later",
    "upstream-unavailable": "A vendor service is unavailable; retry later",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "conflict": "Conflict",
    "invalid-request": "The request is invalid",
    "invalid-signature": "Invalid webhook signature",
    "internal-error": "Internal error",
    "not-ready": "Not ready",
    "database-unavailable": "The database is unavailable; nothing was accepted, retry later",
    "backlog": "Too many accepted events wait to be stored; retry later",
    "concurrent-upload": "The same events are being uploaded by another request; retry",
    "conflicting-event": "An event id was accepted earlier with other content",
    "pairing-code-unknown": "Unknown pairing code",
    "pairing-code-used": "The pairing code was already used",
    "pairing-code-expired": "The pairing code has expired",
    "pairing-locked": "Too many failed pairing attempts from this address",
}


# The status of each code an error may carry (`rtm.errors.CodedError` subclasses raised by parts
# the gateway mounts), and the code of each status a plain HTTP error answers with.
STATUS_OF_CODE: dict[str, int] = {"invalid-request": 422, "conflict": 409, "not-found": 404, "forbidden": 403}
CODE_OF_STATUS: dict[int, str] = {
    400: "invalid-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
}


@dataclass
class Problem(Exception):
    status: int
    code: str
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.detail or ''}"

    def body(self, request_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": TYPE_PREFIX + self.code,
            "title": TITLES.get(self.code, self.code),
            "status": self.status,
            "code": self.code,
            "request_id": request_id,
        }
        if self.detail:
            out["detail"] = self.detail
        if self.errors is not None:
            out["errors"] = self.errors
        out.update(self.extra)
        return out


def from_coded_error(exc: CodedError) -> Problem:
    """The problem a coded error answers with: its code, the code's status, its message."""
    return Problem(STATUS_OF_CODE.get(exc.code, 422), exc.code, exc.detail)


def from_http_status(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Problem:
    return Problem(status, CODE_OF_STATUS.get(status, "invalid-request"), detail, headers=dict(headers or {}))


def problem_response(problem: Problem, request_id: str) -> Response:
    return Response(
        content=orjson.dumps(problem.body(request_id)),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers={**problem.headers, "X-Request-ID": request_id},
    )


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, int(-(-seconds // 1))))}
