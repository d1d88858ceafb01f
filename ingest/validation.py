"""Turning uploaded items into canonical events the device is allowed to write.

Batch policy (all or nothing): every item is decoded and checked; if any fails, the response
lists every failing item by index with a machine-readable code and nothing of the batch is
published. A client drops (or fixes) the listed items and resends; the rest are then accepted,
and any that were somehow accepted before are acknowledged as duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.problems import Problem
from ingest.store import DeviceCredential
from rtm.contract import ActivityInterval, DecodeError, Event, ImuBatch, SessionMarker
from rtm.contract.codec import EVENT_TYPES, decode_imu, from_dict

log = logging.getLogger("ingest.validation")

# What a device (hub, phone, wearable gateway) may send. Assignments, time entries and time-zone
# changes come from clinic-side systems, not from devices.
DEVICE_KINDS = frozenset({"imu_batch", "activity_interval", "session_marker"})
FORBIDDEN_CODES = frozenset({"wrong-patient", "wrong-episode", "wrong-device"})
MAX_ERRORS_LISTED = 100


@dataclass(frozen=True)
class ItemError:
    index: int
    code: str
    detail: str
    pointer: str | None = None  # JSON pointer into the body, where the item is not in a plain list

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "code": self.code, "detail": self.detail}
        if self.pointer is not None:
            out["pointer"] = self.pointer
        return out



def decode_item(index: int, item: Any) -> Event | ItemError:
    """Decode one JSON object or one binary IMU frame into a validated canonical event."""
    try:
        if isinstance(item, bytes):
            return decode_imu(item)
        if not isinstance(item, dict):
            return ItemError(index, "malformed", "an event must be a JSON object")
        kind = item.get("kind")
        if isinstance(kind, str) and kind in EVENT_TYPES and kind not in DEVICE_KINDS:
            return ItemError(
                index, "kind-not-allowed", f"devices may send {sorted(DEVICE_KINDS)}, not {kind!r}"
            )
        return from_dict(dict(item))
    except DecodeError as exc:
        return ItemError(index, exc.code, exc.detail)
    except Exception as exc:  # whatever a hostile body triggers is a 422, never a 500
        log.warning("unexpected %s while decoding an item", type(exc).__name__)
        return ItemError(index, "invalid", "the event could not be interpreted")


def time_span(event: Event) -> tuple[datetime, datetime]:
    if isinstance(event, ImuBatch):
        return event.t0, event.t0 + timedelta(seconds=event.duration_s())
    if isinstance(event, ActivityInterval):
        return event.start, event.end
    if isinstance(event, SessionMarker):
        return event.at, event.at
    raise TypeError(f"no time span for {event.kind}")


def check_item(
    index: int, event: Event, cred: DeviceCredential, now: datetime, skew: timedelta
) -> Event | ItemError:
    """Apply the enrolment and time rules; stamp the enrolled episode on events that lack one."""
    if event.kind not in DEVICE_KINDS:
        return ItemError(index, "kind-not-allowed", f"devices may send {sorted(DEVICE_KINDS)}")
    if event.patient_id != cred.patient_id:
        return ItemError(
            index, "wrong-patient", "the event's patient is not the one this device is enrolled for"
        )
    if event.provenance.device_id != cred.device_id:
        return ItemError(index, "wrong-device", "provenance.device_id is not this credential's device")
    episode = getattr(event, "episode_id", None)
    if episode is not None and episode != cred.episode_id:
        return ItemError(
            index, "wrong-episode", "the event's episode is not the one this device is enrolled for"
        )
    start, end = time_span(event)
    if end > now + skew:
        return ItemError(
            index,
            "future-timestamp",
            f"the event ends after now + {skew.total_seconds():.0f} s allowed clock skew",
        )
    if start < cred.valid_from - skew:
        return ItemError(index, "before-enrolment", "the event starts before the device was enrolled")
    if episode is None:
        return event.model_copy(update={"episode_id": cred.episode_id})
    return event


def validate_batch(
    items: Sequence[Any], cred: DeviceCredential, skew_s: float, now: datetime | None = None
) -> list[Event]:
    """All-or-nothing: the validated events, or a Problem listing every failing item by index."""
    now = now or datetime.now(UTC)
    skew = timedelta(seconds=skew_s)
    events: list[Event] = []
    errors: list[ItemError] = []
    for i, item in enumerate(items):
        decoded = decode_item(i, item)
        if isinstance(decoded, ItemError):
            errors.append(decoded)
            continue
        checked = check_item(i, decoded, cred, now, skew)
        if isinstance(checked, ItemError):
            errors.append(checked)
            continue
        events.append(checked)
    if errors:
        raise batch_problem(errors, len(items))
    return events


def batch_problem(errors: list[ItemError], total: int) -> Problem:
    forbidden = any(e.code in FORBIDDEN_CODES for e in errors)
    return Problem(
        403 if forbidden else 422,
        "forbidden-events" if forbidden else "invalid-events",
        f"{len(errors)} of {total} events rejected; nothing in this request was accepted",
        errors=[e.as_dict() for e in errors[:MAX_ERRORS_LISTED]],
        extra={"rejected": len(errors), "total": total},
    )
