"""Step / activity intervals, kept at the source's own granularity.

A device that counts steps per minute, a phone's Health Connect `StepsRecord` spanning twenty
minutes, a vendor cloud's daily total: each arrives as one interval with its start, end and
count, and is never resampled on the way in (the processors decide how to apportion it).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, model_validator

from rtm.contract.base import AwareDatetime, Event, Identifier, OutOfPhysicalRange, Storable, time_key

ActivitySource = Literal["device", "health_connect", "healthkit", "vendor_cloud", "derived"]
MAX_INTERVAL = timedelta(days=1)
MAX_STEPS_PER_MINUTE = 300  # sprinting cadence is ~200/min; more is a sensor or upload error


class ActivityInterval(Event):
    kind = "activity_interval"

    episode_id: Identifier | None = None
    source: ActivitySource
    # The source's own record id (Health Connect metadata id, HealthKit UUID, vendor id), when it
    # has one: part of the event id so that an edited record keeps its identity.
    source_record_id: Annotated[str, Field(max_length=128), Storable] | None = None
    start: AwareDatetime
    end: AwareDatetime
    steps: Annotated[int, Field(ge=0, strict=True)]
    active_minutes: Annotated[float, Field(ge=0, strict=True)] | None = None
    # The local clock offset the source recorded at start (Health Connect's startZoneOffset).
    zone_offset_s: Annotated[int, Field(ge=-14 * 3600, le=14 * 3600, strict=True)] | None = None
    # HealthKit reports deletions: a deleted record withdraws an earlier interval with the same id.
    deleted: Annotated[bool, Field(strict=True)] = False

    def id_parts(self) -> tuple[str, ...]:
        stream = self.source_record_id or time_key(self.start)
        return (self.provenance.device_id, self.source, stream)

    @property
    def granularity_s(self) -> float:
        return (self.end - self.start).total_seconds()

    @model_validator(mode="after")
    def _check_interval(self) -> ActivityInterval:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.end - self.start > MAX_INTERVAL:
            raise ValueError(f"an interval may span at most {MAX_INTERVAL}")
        minutes = self.granularity_s / 60.0
        if self.steps > MAX_STEPS_PER_MINUTE * max(minutes, 1.0):
            raise OutOfPhysicalRange(f"{self.steps} steps in {minutes:.1f} min exceed {MAX_STEPS_PER_MINUTE}/min")
        if self.active_minutes is not None and self.active_minutes > minutes + 1e-9:
            raise ValueError("active_minutes exceed the interval's length")
        return self
