"""The data contract: deterministic ids, validation with clear errors, exact encoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import ValidationError

from rtm.contract import (
    ActivityInterval,
    DecodeError,
    ImuBatch,
    Provenance,
    TherapistTimeEntry,
    TimezoneChange,
    decode,
    encode,
)
from rtm.contract.codec import IMU_MAGIC

PROV = Provenance(adapter="test", vendor="acme", device_id="dev-1", firmware="2.1")
T0 = datetime(2026, 3, 8, 6, 59, 59, 500000, tzinfo=UTC)


def imu(n: int = 100, **kw: object) -> ImuBatch:
    rng = np.random.default_rng(0)
    fields: dict[str, object] = dict(
        patient_id="p-1", provenance=PROV, stream_id="rec-1", body_site="thigh_left", t0=T0,
        sample_rate_hz=100.0, acc=rng.normal(0, 1, (n, 3)), gyr=rng.normal(0, 1, (n, 3)),
    )
    fields.update(kw)
    return ImuBatch(**fields)  # type: ignore[arg-type]


def test_event_id_is_derived_from_source_not_payload() -> None:
    a, b = imu(), imu(acc=np.zeros((100, 3)))
    assert a.event_id == b.event_id  # same device, stream, first sample: the same batch
    assert imu(t0=T0 + timedelta(microseconds=1)).event_id != a.event_id
    assert imu(stream_id="rec-2").event_id != a.event_id


def test_event_id_that_does_not_match_its_source_is_rejected() -> None:
    good = imu()
    assert imu(event_id=good.event_id).event_id == good.event_id
    with pytest.raises(ValidationError, match="does not match"):
        imu(event_id="00000000-0000-0000-0000-000000000000")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"acc": np.full((100, 3), np.nan)}, "NaN"),
        ({"gyr": np.full((100, 3), np.inf)}, "NaN or infinite"),
        ({"acc": np.zeros((100, 2))}, "n x 3"),
        ({"acc": np.zeros((0, 3)), "gyr": np.zeros((0, 3))}, "at least one sample"),
        ({"gyr": np.zeros((99, 3))}, "acc has 100 samples but gyr has 99"),
        ({"acc": np.full((100, 3), 400.0)}, "physical range"),
        ({"sample_rate_hz": 0.5}, "greater than or equal to 1"),
        ({"t0": datetime(2026, 1, 1)}, "time-zone offset"),
        ({"t_offsets_us": np.r_[0, np.arange(99)[::-1]]}, "strictly increasing"),
        ({"t_offsets_us": np.arange(1, 101)}, "must start at 0"),
        ({"patient_id": "robert'); drop table"}, "pattern"),
        ({"acc": [["1.5", "0", "9.8"]] * 100}, "array of numbers"),
        ({"acc": [[True, False, True]] * 100}, "array of numbers"),
        ({"t_offsets_us": np.r_[0, np.arange(1, 100) * 2**26]}, "2\\*\\*31"),
        ({"t_offsets_us": [0] + [10**30] * 99}, "integer microseconds"),
    ],
)
def test_bad_imu_batches_are_rejected_with_a_reason(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        imu(**change)


def test_imu_frame_round_trip_is_exact_with_and_without_offsets() -> None:
    for batch in (imu(), imu(t_offsets_us=np.cumsum(np.r_[0, np.full(99, 10_000)]).astype(np.int32))):
        frame = encode(batch)
        assert frame[:4] == IMU_MAGIC
        back = decode(frame)
        assert isinstance(back, ImuBatch)
        assert back == batch
        assert back != imu(acc=np.zeros((100, 3)))
        header = 400  # ids, provenance, units: fixed overhead per batch
        assert len(frame) <= header + 28 * batch.n_samples  # 24 bytes per 6-axis sample (+4 with offsets)


def test_imu_frame_times_follow_offsets_or_rate() -> None:
    uniform = imu(n=5)
    assert np.allclose(uniform.times_s(), [0, 0.01, 0.02, 0.03, 0.04])
    jittered = imu(n=3, t_offsets_us=np.array([0, 9_000, 21_000]))
    assert np.allclose(jittered.times_s(), [0, 0.009, 0.021])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "malformed"),
        (b"not json at all", "malformed"),
        (b"[1, 2]", "malformed"),
        (b'{"kind": "telepathy"}', "unknown_kind"),
        (b'{"kind": "activity_interval", "patient_id": "p"}', "invalid"),
    ],
)
def test_decode_errors_name_a_stable_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(data)
    assert info.value.reason == reason


def test_truncated_or_tampered_imu_frames_are_rejected() -> None:
    frame = encode(imu())
    with pytest.raises(DecodeError, match="payload bytes"):
        decode(frame[:-4])
    with pytest.raises(DecodeError, match="version"):
        decode(frame[:4] + b"\x09" + frame[5:])
    nan = bytearray(frame)
    nan[-4:] = np.array([np.nan], dtype="<f4").tobytes()
    with pytest.raises(DecodeError, match="NaN"):
        decode(bytes(nan))


def test_activity_interval_keeps_source_granularity_and_validates() -> None:
    iv = ActivityInterval(
        patient_id="p-1", provenance=PROV, source="health_connect", source_record_id="hc-123",
        start=T0, end=T0 + timedelta(minutes=20), steps=1500, zone_offset_s=-5 * 3600,
    )
    assert iv.granularity_s == 1200
    assert decode(encode(iv)) == iv
    with pytest.raises(ValidationError, match="end must be after start"):
        ActivityInterval(patient_id="p", provenance=PROV, source="device", start=T0, end=T0, steps=0)
    with pytest.raises(ValidationError, match="exceed"):
        ActivityInterval(patient_id="p", provenance=PROV, source="device", start=T0,
                         end=T0 + timedelta(minutes=1), steps=5000)
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        ActivityInterval(patient_id="p", provenance=PROV, source="device", start=T0,
                         end=T0 + timedelta(minutes=1), steps=-1)


def test_timezone_must_be_a_real_iana_zone() -> None:
    ok = TimezoneChange(patient_id="p", provenance=PROV, effective_from=T0, tz="America/Chicago")
    assert decode(encode(ok)) == ok
    with pytest.raises(ValidationError, match="unknown IANA time zone"):
        TimezoneChange(patient_id="p", provenance=PROV, effective_from=T0, tz="Mars/Olympus_Mons")


def test_interactive_time_needs_a_channel() -> None:
    with pytest.raises(ValidationError, match="needs a channel"):
        TherapistTimeEntry(
            patient_id="p", provenance=PROV, entry_id="e1", episode_id="ep", practitioner_id="pt",
            practitioner_role="therapist", discipline="PT", activity="interactive_communication",
            channel="none", started_at=T0, minutes=12,
        )
