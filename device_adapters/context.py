"""What an adapter needs to know about the device a record came through."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceContext:
    patient_id: str
    episode_id: str | None
    device_id: str
