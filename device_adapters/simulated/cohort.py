"""A simulated cohort: patients, their episodes and devices, and the events their devices send.

Deterministic for a seed, so running the main job twice produces the same event ids and shows
that a repeat changes nothing downstream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np

from rtm.contract import ActivityInterval, Event, ImuBatch, Provenance, SessionMarker
from rtm.contract.imu import G

CLINIC_ID = "clinic-demo"
THERAPIST_ID = "pt-demo-1"
DEVICE_MODEL = "sim-imu-1"


@dataclass(frozen=True)
class SimPatient:
    patient_id: str
    episode_id: str
    imu_device: str
    tz: str
    adherence: float  # probability of exercising on a given day
    wear: float  # probability of wearing the step counter on a given day
    start: date


@dataclass(frozen=True)
class Cohort:
    patients: list[SimPatient]
    start: date
    days: int
    seed: int
    zones: tuple[str, ...] = field(default=("America/New_York", "America/Chicago", "America/Denver",
                                           "America/Los_Angeles"))


def make_cohort(n_patients: int, days: int, seed: int, start: date | None = None) -> Cohort:
    rng = np.random.default_rng(seed)
    first = start or (datetime.now(UTC).date() - timedelta(days=days))
    zones = Cohort([], first, days, seed).zones
    patients = [
        SimPatient(
            patient_id=f"pat-{seed}-{i:04d}", episode_id=f"ep-{seed}-{i:04d}", imu_device=f"imu-{seed}-{i:04d}",
            tz=zones[i % len(zones)], adherence=float(rng.uniform(0.3, 1.0)), wear=float(rng.uniform(0.6, 1.0)),
            start=first,
        )
        for i in range(n_patients)
    ]
    return Cohort(patients, first, days, seed)


def knee_extension_batches(
    p: SimPatient, stream_id: str, t0: datetime, reps: int, rng: np.random.Generator, rate_hz: float = 50.0,
    batch_s: float = 10.0,
) -> list[ImuBatch]:
    """A shank-worn IMU during seated knee extensions: rotation about the sensor's x axis."""
    tempo = rng.uniform(0.25, 0.5)  # reps per second
    amplitude = np.deg2rad(rng.uniform(50, 80))
    duration = reps / tempo + 4.0
    t = np.arange(0, duration, 1 / rate_hz)
    phase = np.clip(t - 2.0, 0, reps / tempo)
    angle = amplitude * (1 - np.cos(2 * np.pi * tempo * phase)) / 2
    omega = np.gradient(angle, t)
    acc = np.stack([np.zeros_like(t), G * np.sin(angle), G * np.cos(angle)], axis=1)
    gyr = np.stack([omega, np.zeros_like(t), np.zeros_like(t)], axis=1)
    acc += rng.normal(0, 0.05, acc.shape)
    gyr += rng.normal(0, 0.01, gyr.shape)
    per = int(batch_s * rate_hz)
    prov = Provenance(adapter="simulated", vendor="simulated", device_id=p.imu_device, firmware="1.0")
    return [
        ImuBatch(
            patient_id=p.patient_id, episode_id=p.episode_id, provenance=prov, stream_id=stream_id,
            body_site="shank_right", t0=t0 + timedelta(seconds=i / rate_hz), sample_rate_hz=rate_hz,
            acc=acc[i : i + per], gyr=gyr[i : i + per],
        )
        for i in range(0, len(t), per)
    ]


def patient_events(cohort: Cohort, p: SimPatient) -> Iterator[Event]:
    """Everything one patient's devices send over the cohort's days, in time order per device."""
    rng = np.random.default_rng([cohort.seed, int(p.patient_id.rsplit("-", 1)[1])])
    phone = Provenance(adapter="health_connect", vendor="android", device_id=f"phone-{p.patient_id}")
    for d in range(cohort.days):
        day = cohort.start + timedelta(days=d)
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if rng.random() < p.wear:
            for hour in range(13, 24):  # daytime in the Americas
                steps = int(rng.poisson(rng.uniform(150, 700)))
                yield ActivityInterval(
                    patient_id=p.patient_id, episode_id=p.episode_id, provenance=phone, source="health_connect",
                    source_record_id=f"{p.patient_id}-{day.isoformat()}-{hour}",
                    start=midnight + timedelta(hours=hour), end=midnight + timedelta(hours=hour + 1), steps=steps,
                )
        if rng.random() < p.adherence:
            session = f"{p.patient_id}-{day.isoformat()}"
            start = midnight + timedelta(hours=15, minutes=int(rng.integers(0, 120)))
            prov = Provenance(adapter="simulated", vendor="simulated", device_id=p.imu_device)
            yield SessionMarker(patient_id=p.patient_id, episode_id=p.episode_id, provenance=prov, session_id=session,
                                phase="start", at=start, exercise="knee_extension", body_site="shank_right",
                                prescribed_sets=2, prescribed_reps=10)
            at = start
            for s in range(2):
                batches = knee_extension_batches(p, f"{session}-set{s}", at + timedelta(seconds=5), 10, rng)
                yield from batches
                at = batches[-1].t0 + timedelta(seconds=60)
            yield SessionMarker(patient_id=p.patient_id, episode_id=p.episode_id, provenance=prov, session_id=session,
                                phase="end", at=at, exercise="knee_extension", body_site="shank_right")
