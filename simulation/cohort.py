"""A simulated cohort: patients, their episodes and devices, and every event their devices send.

Each patient has a home-exercise prescription and a wearable IMU that also counts steps. Days
vary: some patients exercise most days and some rarely; some improve in range of motion, some
stall and some regress; wearables go unworn; one patient moves across time zones. IMU data come
from the signal library's synthetic generator (known joint-angle trajectories, sensor noise and
bias, random mounting, jitter and dropped samples), so the true repetitions are known.

Deterministic for a seed: running the main job twice sends the same event ids, and the second
run shows that a repeat changes nothing downstream.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from rtm.contract import ActivityInterval, Event, ImuBatch, Provenance, SessionMarker, TimezoneChange
from simulation.synth import SensorModel, SessionPlan, rep_trajectory, simulate_session

CLINIC_ID = "clinic-demo"
THERAPIST_ID = "pt-demo-1"
DEVICE_MODEL = "sim-imu-1"
ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
EXERCISES = {  # exercise: (body site of the IMU, typical starting ROM in degrees)
    "knee_extension": ("shank_right", (45.0, 65.0)),
    "heel_slide": ("shank_left", (50.0, 75.0)),
    "straight_leg_raise": ("thigh_right", (25.0, 40.0)),
    "shoulder_flexion": ("upper_arm_right", (70.0, 110.0)),
    "elbow_flexion": ("forearm_left", (70.0, 100.0)),
}
TRENDS = {"improving": 0.6, "stalled": 0.0, "regressing": -0.5}  # degrees of ROM per day
BATCH_S = 10.0
SENSOR = SensorModel(rate_hz=50.0)


@dataclass(frozen=True)
class SimPatient:
    index: int
    patient_id: str
    episode_id: str
    device_id: str
    tz: str
    exercise: str
    body_site: str
    adherence: float  # probability of exercising on a given day
    wear: float  # probability of wearing the device on a given day
    rom_start_deg: float
    trend: str
    moves_to: str | None = None  # a time-zone move half-way through


@dataclass(frozen=True)
class Cohort:
    patients: list[SimPatient]
    start: date
    days: int
    seed: int

    @property
    def prescribed_sets(self) -> int:
        return 2

    @property
    def prescribed_reps(self) -> int:
        return 10


def make_cohort(n_patients: int, days: int, seed: int, start: date | None = None) -> Cohort:
    rng = np.random.default_rng(seed)
    first = start or (datetime.now(UTC).date() - timedelta(days=days))
    # The cohort's shape and first day are part of every id: a cohort of another size, length or
    # start is other people, so a run on a later day never collides with an earlier run's records,
    # while a rerun on the same day replays the same events (and must store nothing new).
    tag = f"{seed}n{n_patients}d{days}s{first:%y%m%d}"
    patients = []
    for i in range(n_patients):
        exercise = list(EXERCISES)[i % len(EXERCISES)]
        site, (lo, hi) = EXERCISES[exercise]
        patients.append(SimPatient(
            index=i, patient_id=f"pat-{tag}-{i:04d}", episode_id=f"ep-{tag}-{i:04d}",
            device_id=f"imu-{tag}-{i:04d}", tz=ZONES[i % len(ZONES)], exercise=exercise, body_site=site,
            adherence=float(rng.choice([0.25, 0.5, 0.75, 0.9])), wear=float(rng.uniform(0.55, 0.95)),
            rom_start_deg=float(rng.uniform(lo, hi)), trend=list(TRENDS)[i % len(TRENDS)],
            moves_to="America/Los_Angeles" if i == 0 else None,
        ))
    return Cohort(patients, first, days, seed)


def rom_on_day(p: SimPatient, day: int) -> float:
    # A regressing patient loses at most 40% of their range over the simulation.
    return max(p.rom_start_deg + TRENDS[p.trend] * day, 0.6 * p.rom_start_deg)


def _tz_on_day(cohort: Cohort, p: SimPatient, day: int) -> str:
    return p.moves_to if p.moves_to and day >= cohort.days // 2 else p.tz


def _imu_batches(p: SimPatient, stream_id: str, start: datetime, t: np.ndarray, acc: np.ndarray,
                 gyr: np.ndarray) -> list[ImuBatch]:
    prov = Provenance(adapter="simulated", vendor="simulated", device_id=p.device_id, firmware="1.0",
                      model=DEVICE_MODEL)
    cuts = np.searchsorted(t, np.arange(0.0, t[-1] + BATCH_S, BATCH_S))
    batches = []
    for a, b in itertools.pairwise(cuts):
        if b <= a:
            continue
        offsets = np.rint((t[a:b] - t[a]) * 1e6).astype(np.int32)
        batches.append(ImuBatch(
            patient_id=p.patient_id, episode_id=p.episode_id, provenance=prov, stream_id=stream_id,
            body_site=p.body_site, t0=start + timedelta(microseconds=round(t[a] * 1e6)),
            sample_rate_hz=SENSOR.rate_hz, acc=acc[a:b], gyr=gyr[a:b], t_offsets_us=offsets,
        ))
    return batches


def exercise_session(cohort: Cohort, p: SimPatient, day: int, start: datetime,
                     rng: np.random.Generator) -> tuple[list[Event], int]:
    """Markers and IMU batches of one session; also the true number of reps."""
    plan = SessionPlan(n_sets=(cohort.prescribed_sets, cohort.prescribed_sets), between_sets=("rest", "fidget"),
                       between_s=(20.0, 40.0))
    trajectories = [
        rep_trajectory(rng, n_reps=int(rng.integers(cohort.prescribed_reps - 3, cohort.prescribed_reps + 1)),
                       rom_deg=rom_on_day(p, day) + float(rng.normal(0, 2.0)),
                       tempo_hz=float(rng.uniform(0.3, 0.8)), rate_hz=200.0)
        for _ in range(cohort.prescribed_sets)
    ]
    session = simulate_session(rng, p.exercise, plan, SENSOR, trajectories)
    rec = session.recording
    session_id = f"{p.patient_id}-d{day:03d}"
    prov = Provenance(adapter="simulated", vendor="simulated", device_id=p.device_id)
    common = dict(patient_id=p.patient_id, episode_id=p.episode_id, provenance=prov, session_id=session_id,
                  exercise=p.exercise, body_site=p.body_site)
    end = start + timedelta(seconds=float(rec.t[-1]))
    events: list[Event] = [
        SessionMarker(phase="start", at=start, prescribed_sets=cohort.prescribed_sets,
                      prescribed_reps=cohort.prescribed_reps, **common),
        *_imu_batches(p, session_id, start, rec.t - rec.t[0], rec.acc, rec.gyr),
        SessionMarker(phase="end", at=end, **common),
    ]
    return events, sum(len(s.reps) for s in session.sets)


def step_intervals(p: SimPatient, local_day: date, tz: str, rng: np.random.Generator) -> list[ActivityInterval]:
    """Hourly step counts from the wearable while worn, 08:00-21:00 local; quiet hours report 0."""
    zone = ZoneInfo(tz)
    prov = Provenance(adapter="simulated", vendor="simulated", device_id=p.device_id, model=DEVICE_MODEL)
    out = []
    for hour in range(8, 21):
        start = datetime(local_day.year, local_day.month, local_day.day, hour, tzinfo=zone)
        steps = 0 if rng.random() < 0.15 else int(rng.poisson(rng.uniform(100, 900)))
        out.append(ActivityInterval(
            patient_id=p.patient_id, episode_id=p.episode_id, provenance=prov, source="device",
            start=start, end=start + timedelta(hours=1), steps=steps,
            zone_offset_s=int(start.utcoffset().total_seconds()),  # type: ignore[union-attr]
        ))
    return out


@dataclass
class Truth:
    sessions: int = 0
    reps: int = 0


def patient_events(cohort: Cohort, p: SimPatient, truth: Truth | None = None) -> Iterator[Event]:
    """Everything one patient's devices send over the cohort's days, in time order."""
    rng = np.random.default_rng([cohort.seed, p.index])
    for day in range(cohort.days):
        local_day = cohort.start + timedelta(days=day)
        tz = _tz_on_day(cohort, p, day)
        if p.moves_to and day == cohort.days // 2:
            at = datetime(local_day.year, local_day.month, local_day.day, 4, tzinfo=ZoneInfo(tz))
            yield TimezoneChange(patient_id=p.patient_id, provenance=Provenance(
                adapter="simulated", vendor="simulated", device_id=p.device_id), effective_from=at, tz=tz)
        worn = rng.random() < p.wear
        if worn:
            yield from step_intervals(p, local_day, tz, rng)
        if worn and rng.random() < p.adherence:
            hour = float(rng.uniform(9, 19))
            start = datetime(local_day.year, local_day.month, local_day.day, tzinfo=ZoneInfo(tz)) + timedelta(
                hours=hour)
            events, reps = exercise_session(cohort, p, day, start.astimezone(UTC), rng)
            if truth is not None:
                truth.sessions += 1
                truth.reps += reps
            yield from events
