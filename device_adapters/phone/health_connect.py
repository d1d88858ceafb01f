"""Android Health Connect `StepsRecord`s, as a phone app exports them (the Jetpack record's
property names, Instants as ISO-8601 UTC text, ZoneOffsets as "+02:00" or seconds), mapped to
canonical ActivityInterval events at the record's own interval.

    StepsRecord(startTime, startZoneOffset?, endTime, endZoneOffset?, count: 1..1_000_000, metadata)

The record's `metadata.id` (assigned by Health Connect) becomes `source_record_id`, so an edited
record (same id, newer `lastModifiedTime`) keeps its event id and replaces the earlier version
downstream, also when the edit moved its start (the sink keeps one version in force per record;
see docs/processors.md). Deletions arrive from the Changes API as record ids only
(`DeletionChange.recordId`) and withdraw the version in force.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from device_adapters.context import DeviceContext
from device_adapters.phone.zone import ZoneOffsetSeconds
from rtm.contract import ActivityInterval, Provenance, make_event_id
from rtm.contract.base import AwareDatetime

ADAPTER = "health-connect"
RecordId = Annotated[str, Field(min_length=1, max_length=128)]


class DataOrigin(BaseModel):
    model_config = ConfigDict(extra="ignore")
    packageName: Annotated[str, Field(max_length=256)]


class HcDevice(BaseModel):
    model_config = ConfigDict(extra="ignore")
    manufacturer: Annotated[str, Field(max_length=64)] | None = None
    model: Annotated[str, Field(max_length=64)] | None = None
    type: int | None = None


class HcMetadata(BaseModel):
    # Health Connect adds metadata fields over time: ignore the ones this adapter does not use.
    model_config = ConfigDict(extra="ignore")
    id: RecordId
    dataOrigin: DataOrigin | None = None
    lastModifiedTime: AwareDatetime | None = None
    clientRecordId: Annotated[str, Field(max_length=256)] | None = None
    clientRecordVersion: int = 0
    recordingMethod: int | None = None
    device: HcDevice | None = None


class StepsRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")
    startTime: AwareDatetime
    startZoneOffset: ZoneOffsetSeconds = None
    endTime: AwareDatetime
    endZoneOffset: ZoneOffsetSeconds = None
    count: Annotated[int, Field(ge=1, le=1_000_000, strict=True)]
    metadata: HcMetadata


def to_interval(record: StepsRecord, ctx: DeviceContext) -> ActivityInterval:
    device = record.metadata.device
    return ActivityInterval(
        patient_id=ctx.patient_id,
        episode_id=ctx.episode_id,
        provenance=Provenance(
            adapter=ADAPTER,
            vendor=(device.manufacturer if device and device.manufacturer else "android"),
            device_id=ctx.device_id,
            model=device.model if device else None,
        ),
        source="health_connect",
        source_record_id=record.metadata.id,
        start=record.startTime,
        end=record.endTime,
        steps=record.count,
        zone_offset_s=record.startZoneOffset,
    )


def deletion_event_id(record_id: str, ctx: DeviceContext) -> uuid.UUID:
    """The id of the interval a deleted record withdraws (see ActivityInterval.id_parts)."""
    return make_event_id("activity_interval", ctx.device_id, "health_connect", record_id)


def to_deletion(record_id: str, start: datetime, end: datetime, ctx: DeviceContext) -> ActivityInterval:
    return ActivityInterval(
        patient_id=ctx.patient_id,
        episode_id=ctx.episode_id,
        provenance=Provenance(adapter=ADAPTER, vendor="android", device_id=ctx.device_id),
        source="health_connect",
        source_record_id=record_id,
        start=start,
        end=end,
        steps=0,
        deleted=True,
    )
