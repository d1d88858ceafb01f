"""Canonical events to table rows (the archive tables of the raw topics)."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from processors.sink.postgres import UpsertSpec
from rtm.contract import ActivityInterval, ImuBatch

IMU_BATCHES = UpsertSpec(
    "imu_batches",
    ("time", "event_id", "patient_id", "episode_id", "device_id", "stream_id", "body_site", "sample_rate_hz",
     "n_samples", "duration_s", "schema_version", "frame", "provenance"),
    key=("event_id", "time"),
)

ACTIVITY_INTERVALS = UpsertSpec(
    "activity_intervals",
    ("time", "end_time", "event_id", "patient_id", "episode_id", "device_id", "source", "source_record_id",
     "steps", "active_minutes", "zone_offset_s", "deleted", "provenance"),
    key=("event_id", "time"),
    # A source may edit or delete its record later (same id): the newest state wins.
    update=("end_time", "steps", "active_minutes", "zone_offset_s", "deleted", "provenance"),
)


def imu_row(batch: ImuBatch, frame: bytes) -> tuple[Any, ...]:
    return (
        batch.t0, batch.id, batch.patient_id, batch.episode_id, batch.provenance.device_id, batch.stream_id,
        batch.body_site.value, batch.sample_rate_hz, batch.n_samples, batch.duration_s(), batch.schema_version,
        frame, Jsonb(batch.provenance.model_dump(mode="json")),
    )


def activity_row(iv: ActivityInterval) -> tuple[Any, ...]:
    return (
        iv.start, iv.end, iv.id, iv.patient_id, iv.episode_id, iv.provenance.device_id, iv.source,
        iv.source_record_id, iv.steps, iv.active_minutes, iv.zone_offset_s, iv.deleted,
        Jsonb(iv.provenance.model_dump(mode="json")),
    )
