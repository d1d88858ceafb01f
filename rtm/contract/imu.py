"""IMU sample batches: columnar float32 arrays plus what is needed to interpret them."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import AfterValidator, Field, PlainSerializer, PlainValidator, WithJsonSchema, model_validator

from rtm.contract.base import (
    AwareDatetime,
    Event,
    Identifier,
    NonFiniteValue,
    OutOfPhysicalRange,
    time_key,
)

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]

MAX_SAMPLES = 120_000  # 10 min at 200 Hz: larger recordings are split by the sender
# Physical limits of consumer/medical IMUs (±32 g accelerometers, ±4000 °/s gyroscopes).
ACC_LIMIT = {"m/s^2": 32 * 9.80665, "g": 32.0}
GYR_LIMIT = {"rad/s": np.deg2rad(4000.0), "deg/s": 4000.0}
RATE_LIMIT_HZ = (1.0, 2000.0)  # wearable IMUs sample at 12.5-1600 Hz


def _rate_in_range(value: float) -> float:
    lo, hi = RATE_LIMIT_HZ
    if not lo <= value <= hi:
        raise OutOfPhysicalRange(f"should be greater than or equal to {lo:g} and less than or equal to {hi:g} Hz")
    return value
G = 9.80665


class BodySite(StrEnum):
    WRIST_LEFT = "wrist_left"
    WRIST_RIGHT = "wrist_right"
    UPPER_ARM_LEFT = "upper_arm_left"
    UPPER_ARM_RIGHT = "upper_arm_right"
    FOREARM_LEFT = "forearm_left"
    FOREARM_RIGHT = "forearm_right"
    CHEST = "chest"
    LOWER_BACK = "lower_back"
    HIP = "hip"
    THIGH_LEFT = "thigh_left"
    THIGH_RIGHT = "thigh_right"
    SHANK_LEFT = "shank_left"
    SHANK_RIGHT = "shank_right"
    FOOT_LEFT = "foot_left"
    FOOT_RIGHT = "foot_right"
    UNKNOWN = "unknown"


def _xyz_array(value: Any) -> F32:
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ValueError("must be an n x 3 array of numbers") from exc
    # Numbers only: numpy would happily turn the strings "1.5" or "NaN" into floats.
    if raw.size and raw.dtype.kind not in "iuf":
        raise ValueError("must be an n x 3 array of numbers")
    arr = raw.astype(np.float32)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"must be an n x 3 array of numbers, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise NonFiniteValue(f"contains NaN or infinite values (first at sample {bad})")
    arr.setflags(write=False)
    return arr


def _offsets_array(value: Any) -> I32 | None:
    if value is None:
        return None
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError("must be a one-dimensional array of integer microseconds") from exc
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError("must be a one-dimensional array of integer microseconds")
    if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(np.int32).max):
        raise ValueError("offsets must lie between 0 and 2**31 - 1 microseconds (split longer batches)")
    out = arr.astype(np.int32)
    out.setflags(write=False)
    return out


XyzArray = Annotated[
    F32,
    PlainValidator(_xyz_array),
    PlainSerializer(lambda a: a.tolist(), when_used="json"),
    WithJsonSchema({"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 3,
                                               "maxItems": 3}}),
]
OffsetArray = Annotated[
    I32 | None,
    PlainValidator(_offsets_array),
    PlainSerializer(lambda a: None if a is None else a.tolist(), when_used="json"),
    WithJsonSchema({"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]}),
]


class ImuBatch(Event):
    """A contiguous run of samples from one recording (`stream_id`) of one device.

    Sample i was taken at `t0 + t_offsets_us[i]` µs, or at `t0 + i / sample_rate_hz` when the
    device samples uniformly (no offsets sent). The id is (device, stream, first-sample time).
    """

    kind = "imu_batch"

    episode_id: Identifier | None = None
    stream_id: Identifier
    body_site: BodySite
    t0: AwareDatetime
    sample_rate_hz: Annotated[float, Field(strict=True), AfterValidator(_rate_in_range)]
    acc_unit: Literal["m/s^2", "g"] = "m/s^2"
    gyr_unit: Literal["rad/s", "deg/s"] = "rad/s"
    acc: XyzArray
    gyr: XyzArray
    t_offsets_us: OffsetArray = None

    def id_parts(self) -> tuple[str, ...]:
        return (self.provenance.device_id, self.stream_id, time_key(self.t0))

    @property
    def n_samples(self) -> int:
        return int(self.acc.shape[0])

    @model_validator(mode="after")
    def _check_arrays(self) -> ImuBatch:
        n = self.acc.shape[0]
        if n == 0:
            raise ValueError("a batch needs at least one sample")
        if n > MAX_SAMPLES:
            raise ValueError(f"{n} samples exceed the {MAX_SAMPLES} allowed in one batch: split it")
        if self.gyr.shape[0] != n:
            raise ValueError(f"acc has {n} samples but gyr has {self.gyr.shape[0]}")
        if np.abs(self.acc).max() > ACC_LIMIT[self.acc_unit]:
            raise OutOfPhysicalRange(f"acc exceeds the physical range ±{ACC_LIMIT[self.acc_unit]:.0f} {self.acc_unit}")
        if np.abs(self.gyr).max() > GYR_LIMIT[self.gyr_unit]:
            raise OutOfPhysicalRange(f"gyr exceeds the physical range ±{GYR_LIMIT[self.gyr_unit]:.1f} {self.gyr_unit}")
        if self.t_offsets_us is not None:
            off = self.t_offsets_us
            if off.shape[0] != n:
                raise ValueError(f"t_offsets_us has {off.shape[0]} entries for {n} samples")
            if off[0] != 0:
                raise ValueError("t_offsets_us must start at 0 (the first sample is at t0)")
            if n > 1 and not (np.diff(off) > 0).all():
                bad = int(np.flatnonzero(np.diff(off) <= 0)[0]) + 1
                raise ValueError(f"t_offsets_us must be strictly increasing (sample {bad} goes back)")
        return self

    def __eq__(self, other: object) -> bool:
        # Arrays compare element-wise; pydantic's field-dict comparison cannot.
        if not isinstance(other, ImuBatch):
            return NotImplemented
        arrays = {"acc", "gyr", "t_offsets_us"}
        if self.model_dump(exclude=arrays) != other.model_dump(exclude=arrays):
            return False
        return all(
            (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
            for a, b in ((getattr(self, f), getattr(other, f)) for f in sorted(arrays))
        )

    __hash__ = None  # type: ignore[assignment]

    def times_s(self) -> npt.NDArray[np.float64]:
        """Seconds since t0 for each sample."""
        if self.t_offsets_us is not None:
            return self.t_offsets_us.astype(np.float64) * 1e-6
        return np.arange(self.n_samples, dtype=np.float64) / self.sample_rate_hz

    def duration_s(self) -> float:
        return float(self.times_s()[-1]) + 1.0 / self.sample_rate_hz

    def acc_si(self) -> F32:
        return self.acc * np.float32(G) if self.acc_unit == "g" else self.acc

    def gyr_si(self) -> F32:
        return np.deg2rad(self.gyr).astype(np.float32) if self.gyr_unit == "deg/s" else self.gyr
