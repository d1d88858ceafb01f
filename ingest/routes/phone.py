"""Phone health-data uploads: Health Connect StepsRecords and HealthKit step-count samples, with
their deletions, mapped by device_adapters.phone to canonical ActivityInterval events.

Same batch policy as /v1/events (all or nothing, failures listed with index and JSON pointer).
A deletion of a record this gateway never accepted withdraws nothing and is reported as
`unknown-record` (not an error: the phone may have deleted it before ever uploading it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from device_adapters.context import DeviceContext
from device_adapters.phone import health_connect as hc
from device_adapters.phone import healthkit as hk
from ingest.acceptance import accept, summary
from ingest.bodies import content_encoding, decode_bytes, media_type, off_loop, parse_json, read_body
from ingest.problems import Problem
from ingest.routes.events import UPLOAD_RESPONSES, accepted_response
from ingest.state import Gateway, gateway, request_id
from ingest.store import DeviceCredential
from ingest.validation import ItemError, batch_problem, check_item
from rtm.contract import ActivityInterval, Event
from rtm.contract.base import violation_code

router = APIRouter(tags=["phone"])
M = TypeVar("M", bound=BaseModel)
K = TypeVar("K")  # the id type of a deleted record


async def _document(request: Request, gw: Gateway) -> dict[str, Any]:
    if media_type(request) != "application/json":
        raise Problem(415, "unsupported-media-type", "send application/json")
    cfg = gw.config
    raw = await read_body(request, cfg.max_body_bytes)
    encoding = content_encoding(request)
    size = len(raw) if encoding in ("", "identity") else 1 << 62  # compressed: size unknown, offload
    doc = await off_loop(
        size, cfg.offload_bytes, lambda: parse_json(decode_bytes(encoding, raw, cfg.max_decoded_bytes))
    )
    if not isinstance(doc, dict):
        raise Problem(400, "malformed-body", "the body must be a JSON object")
    return doc


def _list(doc: dict[str, Any], name: str, limit: int) -> list[Any]:
    value = doc.get(name, [])
    if not isinstance(value, list):
        raise Problem(400, "malformed-body", f"'{name}' must be a list")
    if len(value) > limit:
        raise Problem(
            413, "too-many-events", f"'{name}' holds more than {limit} items", extra={"limit_events": limit}
        )
    return value


def _map(
    items: list[Any],
    name: str,
    model: type[M],
    to_event: Callable[[M], ActivityInterval],
    cred: DeviceCredential,
    skew: timedelta,
    now: datetime,
    events: list[Event],
    pointers: list[str],
    errors: list[ItemError],
) -> None:
    for i, item in enumerate(items):
        pointer = f"/{name}/{i}"
        try:
            event: Event = to_event(model.model_validate(item))
        except ValidationError as exc:
            detail = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in exc.errors()[:5]
            )
            errors.append(ItemError(i, violation_code(exc), detail, pointer))
            continue
        except Exception:  # a hostile record is a 422, never a 500
            errors.append(ItemError(i, "invalid", "the record could not be interpreted", pointer))
            continue
        checked = check_item(i, event, cred, now, skew)
        if isinstance(checked, ItemError):
            errors.append(ItemError(i, checked.code, checked.detail, pointer))
        else:
            events.append(checked)
            pointers.append(pointer)


async def _deletions(
    gw: Gateway,
    ids: list[Any],
    name: str,
    event_id: Callable[[Any], uuid.UUID],
    to_deletion: Callable[[Any, datetime, datetime], ActivityInterval],
    events: list[Event],
    pointers: list[str],
    errors: list[ItemError],
) -> list[dict[str, Any]]:
    """Resolve deleted record ids to the intervals they withdraw; return the unknown ones."""
    wanted: list[tuple[int, Any, uuid.UUID]] = []
    for i, rid in enumerate(ids):
        if rid is None:
            errors.append(ItemError(i, "invalid", "a deletion needs a record id", f"/{name}/{i}"))
            continue
        wanted.append((i, rid, event_id(rid)))
    known = await gw.store.accepted([w[2] for w in wanted]) if wanted else {}
    unknown: list[dict[str, Any]] = []
    for i, rid, eid in wanted:
        row = known.get(eid)
        if row is None or row.start is None or row.end is None:
            unknown.append({"pointer": f"/{name}/{i}", "event_id": str(eid), "status": "unknown-record"})
            continue
        events.append(to_deletion(rid, row.start, row.end))
        pointers.append(f"/{name}/{i}")
    return unknown


def _context(cred: DeviceCredential) -> DeviceContext:
    return DeviceContext(patient_id=cred.patient_id, episode_id=cred.episode_id, device_id=cred.device_id)


def _record_id(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None


def _uuid(value: Any) -> uuid.UUID | None:
    raw = value.get("uuid") if isinstance(value, dict) else value
    try:
        return uuid.UUID(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


async def _upload(
    request: Request,
    items_name: str,
    model: type[M],
    to_event: Callable[[M, DeviceContext], ActivityInterval],
    deleted_name: str,
    deleted_id: Callable[[Any], K | None],
    event_id: Callable[[K, DeviceContext], uuid.UUID],
    to_deletion: Callable[[K, datetime, datetime, DeviceContext], ActivityInterval],
) -> Response:
    """One phone upload: `items_name` records mapped by `model`/`to_event`, and the deletions
    listed under `deleted_name`, whose ids `deleted_id` reads (None: not a valid id)."""
    gw = gateway(request)
    cred = await gw.auth.device(request)
    gw.rate_limit(cred.credential_id)
    doc = await _document(request, gw)
    limit = gw.config.max_events_per_request
    items, deleted = _list(doc, items_name, limit), _list(doc, deleted_name, limit)
    ctx = _context(cred)
    events: list[Event] = []
    pointers: list[str] = []
    errors: list[ItemError] = []
    now, skew = datetime.now(UTC), timedelta(seconds=gw.config.clock_skew_s)
    # Validating thousands of records takes a while: large uploads are validated off the event loop.
    await off_loop(
        len(items),
        gw.config.offload_records,
        lambda: _map(
            items, items_name, model, lambda r: to_event(r, ctx), cred, skew, now, events, pointers, errors
        ),
    )
    ids = [deleted_id(v) for v in deleted]
    if errors:
        raise batch_problem(errors, len(items) + len(deleted))
    unknown = await _deletions(
        gw,
        ids,
        deleted_name,
        lambda rid: event_id(rid, ctx),
        lambda rid, s, e: to_deletion(rid, s, e, ctx),
        events,
        pointers,
        errors,
    )
    if errors:
        raise batch_problem(errors, len(items) + len(deleted))
    results = await accept(gw.store, gw.publisher, gw.relay, gw.config, events)
    return accepted_response(summary(results, request_id(request), pointers, unknown))


def _body_schema(records: str, model: type[BaseModel], deleted: str, deleted_item: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI request body of a phone upload: its records and the ids it withdraws."""
    item = model.model_json_schema(ref_template="#/components/schemas/{model}")
    properties = {records: {"type": "array", "items": item}, deleted: {"type": "array", "items": deleted_item}}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "properties": properties}}}}}


@router.post(
    "/v1/phone/health-connect/steps",
    summary="Upload Health Connect StepsRecords (and deleted record ids)",
    status_code=202,
    responses=UPLOAD_RESPONSES,
    openapi_extra=_body_schema("records", hc.StepsRecord, "deletedRecordIds", {"type": "string"}),
)
async def health_connect_steps(request: Request) -> Response:
    return await _upload(
        request, "records", hc.StepsRecord, hc.to_interval,
        "deletedRecordIds", _record_id, hc.deletion_event_id, hc.to_deletion,
    )


@router.post(
    "/v1/phone/healthkit/steps",
    summary="Upload HealthKit step-count samples (and deleted objects)",
    status_code=202,
    responses=UPLOAD_RESPONSES,
    openapi_extra=_body_schema(
        "samples", hk.HkStepSample, "deletedObjects",
        {"type": "object", "required": ["uuid"], "properties": {"uuid": {"type": "string"}}},
    ),
)
async def healthkit_steps(request: Request) -> Response:
    return await _upload(
        request, "samples", hk.HkStepSample, hk.to_interval,
        "deletedObjects", _uuid, hk.deletion_event_id, hk.to_deletion,
    )
