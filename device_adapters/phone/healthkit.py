"""Apple HealthKit step-count samples (`HKQuantitySample` of `HKQuantityTypeIdentifierStepCount`)
and deletions (`HKDeletedObject`), as a phone app exports an `HKAnchoredObjectQuery` result,
mapped to canonical ActivityInterval events at the sample's own interval.

HealthKit has no zone offset per sample; the optional `HKTimeZone` metadata key (an IANA name)
gives it. A deleted object carries only its UUID: the gateway resolves the interval it withdraws
from what it accepted earlier.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from device_adapters.context import DeviceContext
from rtm.contract import ActivityInterval, Provenance, make_event_id
from rtm.contract.base import AwareDatetime

ADAPTER = "healthkit"
STEP_COUNT = "HKQuantityTypeIdentifierStepCount"
TIME_ZONE_KEY = "HKTimeZone"  # HKMetadataKeyTimeZone


class HkSource(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: Annotated[str, Field(max_length=256)] | None = None
    bundleIdentifier: Annotated[str, Field(max_length=256)]


class HkSourceRevision(BaseModel):
    model_config = ConfigDict(extra="ignore")
    source: HkSource
    version: Annotated[str, Field(max_length=64)] | None = None
    productType: Annotated[str, Field(max_length=64)] | None = None


class HkDevice(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: Annotated[str, Field(max_length=64)] | None = None
    manufacturer: Annotated[str, Field(max_length=64)] | None = None
    model: Annotated[str, Field(max_length=64)] | None = None


class HkStepSample(BaseModel):
    model_config = ConfigDict(extra="ignore")
    uuid: uuid.UUID
    quantityType: Literal["HKQuantityTypeIdentifierStepCount"] = "HKQuantityTypeIdentifierStepCount"
    startDate: AwareDatetime
    endDate: AwareDatetime
    quantity: float = Field(ge=0, strict=True)
    unit: Literal["count"] = "count"
    sourceRevision: HkSourceRevision | None = None
    device: HkDevice | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("quantity")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("quantity must be a finite number")
        return v

    def zone_offset_s(self) -> int | None:
        name = (self.metadata or {}).get(TIME_ZONE_KEY)
        if not isinstance(name, str):
            return None
        try:
            offset = self.startDate.astimezone(ZoneInfo(name)).utcoffset()
        except (ZoneInfoNotFoundError, ValueError):
            return None
        return None if offset is None else int(offset.total_seconds())


class HkDeletedObject(BaseModel):
    model_config = ConfigDict(extra="ignore")
    uuid: uuid.UUID
    metadata: dict[str, Any] | None = None


def _provenance(ctx: DeviceContext, device: HkDevice | None) -> Provenance:
    return Provenance(
        adapter=ADAPTER,
        vendor=(device.manufacturer if device and device.manufacturer else "apple"),
        device_id=ctx.device_id,
        model=device.model if device else None,
    )


def to_interval(sample: HkStepSample, ctx: DeviceContext) -> ActivityInterval:
    return ActivityInterval(
        patient_id=ctx.patient_id,
        episode_id=ctx.episode_id,
        provenance=_provenance(ctx, sample.device),
        source="healthkit",
        source_record_id=str(sample.uuid),
        start=sample.startDate,
        end=sample.endDate,
        # HealthKit stores counts as doubles; merged samples can be fractional.
        steps=round(sample.quantity),
        zone_offset_s=sample.zone_offset_s(),
    )


def deletion_event_id(record_uuid: uuid.UUID, ctx: DeviceContext) -> uuid.UUID:
    """The id of the interval a deleted object withdraws (see ActivityInterval.id_parts)."""
    return make_event_id("activity_interval", ctx.device_id, "healthkit", str(record_uuid))


def to_deletion(
    record_uuid: uuid.UUID, start: datetime, end: datetime, ctx: DeviceContext
) -> ActivityInterval:
    return ActivityInterval(
        patient_id=ctx.patient_id,
        episode_id=ctx.episode_id,
        provenance=_provenance(ctx, None),
        source="healthkit",
        source_record_id=str(record_uuid),
        start=start,
        end=end,
        steps=0,
        deleted=True,
    )
