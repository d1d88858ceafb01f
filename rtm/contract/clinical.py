"""Events about the care around the data: sessions, device assignments, time zones, therapist time."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, model_validator

from rtm.contract.base import AwareDatetime, Event, Identifier, time_key
from rtm.contract.imu import BodySite


class Exercise(StrEnum):
    SQUAT = "squat"
    SIT_TO_STAND = "sit_to_stand"
    HEEL_SLIDE = "heel_slide"
    KNEE_EXTENSION = "knee_extension"
    STRAIGHT_LEG_RAISE = "straight_leg_raise"
    SHOULDER_FLEXION = "shoulder_flexion"
    SHOULDER_ABDUCTION = "shoulder_abduction"
    ELBOW_FLEXION = "elbow_flexion"
    OTHER = "other"


class SessionMarker(Event):
    """The patient (or the app) starts or ends a home-exercise session for one exercise."""

    kind = "session_marker"

    episode_id: Identifier | None = None
    session_id: Identifier
    phase: Literal["start", "end"]
    at: AwareDatetime
    exercise: Exercise
    body_site: BodySite = BodySite.UNKNOWN
    prescribed_sets: Annotated[int, Field(ge=1, le=20, strict=True)] | None = None
    prescribed_reps: Annotated[int, Field(ge=1, le=200, strict=True)] | None = None

    def id_parts(self) -> tuple[str, ...]:
        return (self.provenance.device_id, self.session_id, self.phase)


class DeviceAssignment(Event):
    """A device is assigned to (or released from) a patient's episode of care."""

    kind = "device_assignment"

    episode_id: Identifier
    device_id: Identifier
    action: Literal["assign", "release"]
    at: AwareDatetime
    body_site: BodySite = BodySite.UNKNOWN

    def id_parts(self) -> tuple[str, ...]:
        return (self.device_id, self.episode_id, self.action, time_key(self.at))


def _valid_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {name!r}") from exc
    return name


class TimezoneChange(Event):
    """From `effective_from` on, the patient's local calendar is that of `tz` (an IANA zone)."""

    kind = "timezone_change"

    effective_from: AwareDatetime
    tz: Annotated[str, AfterValidator(_valid_zone)]

    def id_parts(self) -> tuple[str, ...]:
        return (self.patient_id, time_key(self.effective_from), self.tz)


class TimeActivity(StrEnum):
    DATA_REVIEW = "data_review"
    INTERACTIVE_COMMUNICATION = "interactive_communication"
    PLAN_CHANGE = "plan_change"
    EDUCATION = "education"


class TimeChannel(StrEnum):
    VIDEO = "video"
    AUDIO = "audio"
    SECURE_MESSAGE = "secure_message"
    IN_PERSON = "in_person"
    NONE = "none"  # asynchronous work such as reviewing data


class TherapistTimeEntry(Event):
    """Minutes of RTM treatment management spent on one patient by one practitioner.

    A correction is a new entry whose `supersedes` names the entry it replaces, so that the
    audit trail keeps both and the replaced one never counts again.
    """

    kind = "therapist_time_entry"

    entry_id: Identifier
    episode_id: Identifier
    practitioner_id: Identifier
    practitioner_role: Literal["therapist", "assistant", "physician", "npp", "clinical_staff"]
    discipline: Literal["PT", "OT", "SLP"] | None = None
    activity: TimeActivity
    channel: TimeChannel
    started_at: AwareDatetime
    minutes: Annotated[float, Field(gt=0, le=24 * 60, strict=True)]
    service_date: date | None = None
    supersedes: Identifier | None = None

    def id_parts(self) -> tuple[str, ...]:
        return (self.entry_id,)

    @model_validator(mode="after")
    def _check_contact(self) -> TherapistTimeEntry:
        if self.activity is TimeActivity.INTERACTIVE_COMMUNICATION and self.channel is TimeChannel.NONE:
            raise ValueError("interactive communication needs a channel (video, audio, secure message, in person)")
        return self
