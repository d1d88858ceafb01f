"""What every BLE profile plugin provides, and the readings its decoder yields.

A profile names its GATT service and characteristics, the commands that start streaming, and a
decoder: a per-connection object fed raw notification bytes that returns readings. A decoder never
raises on device input: a truncated or corrupt frame is counted in `stats` and skipped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

SIG_BASE = "-0000-1000-8000-00805f9b34fb"


def sig_uuid(short: int) -> str:
    """The 128-bit form of a Bluetooth SIG 16-bit UUID (Core spec Vol 3 Part B §2.5.1)."""
    return f"0000{short:04x}{SIG_BASE}"


class FrameError(ValueError):
    """A notification that cannot be decoded (truncated, corrupt, or of an unknown kind)."""


@dataclass(frozen=True)
class ImuReading:
    """Samples of one stream. `t_device_ns` is each sample's time on the device clock, or None when
    the device sends no time (the hub stamps the frame on arrival and spaces samples by the rate)."""

    stream: str
    sample_rate_hz: float
    acc: F32 | None
    gyr: F32 | None = None
    acc_unit: Literal["m/s^2", "g"] = "g"
    gyr_unit: Literal["rad/s", "deg/s"] = "deg/s"
    t_device_ns: I64 | None = None

    @property
    def n_samples(self) -> int:
        arr = self.acc if self.acc is not None else self.gyr
        return 0 if arr is None else int(arr.shape[0])


@dataclass(frozen=True)
class StepCountReading:
    """A cumulative step counter and the device's own time in milliseconds (Thingy:52 pedometer)."""

    steps: int
    t_device_ms: int


@dataclass(frozen=True)
class CadenceReading:
    """Instantaneous gait (SIG Running Speed and Cadence): no timestamp, no step count."""

    speed_mps: float
    cadence_spm: int
    stride_m: float | None
    total_distance_m: float | None
    running: bool


@dataclass(frozen=True)
class QuaternionReading:
    wxyz: tuple[float, float, float, float]


@dataclass(frozen=True)
class ConfigReading:
    """A device's reported configuration (Thingy motion config, Polar PMD control-point answers)."""

    values: dict[str, int | float | str]


Reading = ImuReading | StepCountReading | CadenceReading | QuaternionReading | ConfigReading


@dataclass
class DecodeStats:
    frames: int = 0
    readings: int = 0
    bad: Counter[str] = field(default_factory=Counter)

    @property
    def bad_total(self) -> int:
        return sum(self.bad.values())


class Decoder(ABC):
    """Per-connection decoder state. `feed` never raises for device input."""

    def __init__(self) -> None:
        self.stats = DecodeStats()

    def feed(self, char_uuid: str, data: bytes | bytearray) -> list[Reading]:
        self.stats.frames += 1
        try:
            out = self.decode(char_uuid.lower(), bytes(data))
        except FrameError as exc:
            self.stats.bad[str(exc).split(":")[0]] += 1
            return []
        self.stats.readings += len(out)
        return out

    @abstractmethod
    def decode(self, char_uuid: str, data: bytes) -> list[Reading]:
        """Decode one notification; raise FrameError (only) for bad frames."""


@dataclass(frozen=True)
class Command:
    """A write the adapter sends after subscribing (to start streaming or configure)."""

    char_uuid: str
    payload: bytes
    response: bool = True


class Profile(ABC):
    """A device profile plugin: adding a device is one module defining one subclass."""

    name: str
    vendor: str
    service_uuid: str
    notify_uuids: tuple[str, ...]

    @abstractmethod
    def decoder(self) -> Decoder: ...

    def start_commands(self) -> list[Command]:
        """Writes that start streaming once notifications are enabled (none for plain SIG profiles)."""
        return []

    def stop_commands(self) -> list[Command]:
        return []


def need(data: bytes, n: int, what: str) -> None:
    if len(data) < n:
        raise FrameError(f"truncated: {what} needs {n} bytes, got {len(data)}")


POLAR_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
