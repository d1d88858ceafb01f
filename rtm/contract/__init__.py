"""The data contract: versioned canonical events every part agrees on (schemas first)."""

from rtm.contract.activity import ActivityInterval
from rtm.contract.base import Event, Provenance, make_event_id
from rtm.contract.clinical import (
    DeviceAssignment,
    Exercise,
    SessionMarker,
    TherapistTimeEntry,
    TimeActivity,
    TimeChannel,
    TimezoneChange,
)
from rtm.contract.codec import EVENT_TYPES, DecodeError, decode, encode
from rtm.contract.imu import BodySite, ImuBatch

__all__ = [
    "EVENT_TYPES",
    "ActivityInterval",
    "BodySite",
    "DecodeError",
    "DeviceAssignment",
    "Event",
    "Exercise",
    "ImuBatch",
    "Provenance",
    "SessionMarker",
    "TherapistTimeEntry",
    "TimeActivity",
    "TimeChannel",
    "TimezoneChange",
    "decode",
    "encode",
    "make_event_id",
]
