"""Assemble IMU recordings from their stored batches and analyse them as a whole.

Batches may arrive late, twice or out of order, and a repetition may straddle two batches. So
a recording is never analysed batch by batch: once it has been quiet for a moment, all of its
stored batches are loaded, ordered, de-duplicated and analysed together, and the recording's
previous results are replaced. The result is a pure function of the stored batches, so replays
and late data converge to the same answer, and a rep split across batches is counted once.

One queued recording is claimed per transaction (`FOR UPDATE SKIP LOCKED`), so any number of
workers can share the queue; a batch that arrives during an analysis waits for the claim and
then queues the recording again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from motion.analysis import ExerciseAnalysis, analyze_exercise
from motion.errors import SignalInputError
from motion.recording import ImuRecording
from processors.dayfacts import DayChange, rebuild_day_facts
from rtm.contract import ImuBatch, decode
from rtm.contract.base import EVENT_ID_NAMESPACE, time_key
from rtm.db import Conn

ALGORITHM_VERSION = "reps-rom-3"


@dataclass(frozen=True)
class StreamKey:
    patient_id: str
    device_id: str
    stream_id: str
    first_time: datetime


@dataclass(frozen=True)
class StreamOutcome:
    key: StreamKey
    status: str  # analysed | no_session | rejected
    detail: str | None
    samples: int
    sets: int
    reps: int
    rom_median_deg: float | None
    last_time: datetime

    def as_result(self) -> dict[str, Any]:
        return {
            "patient_id": self.key.patient_id, "device_id": self.key.device_id, "stream_id": self.key.stream_id,
            "first_time": self.key.first_time.isoformat(), "last_time": self.last_time.isoformat(),
            "status": self.status, "detail": self.detail, "samples": self.samples, "sets": self.sets,
            "reps": self.reps, "rom_median_deg": self.rom_median_deg, "algorithm": ALGORITHM_VERSION,
        }


def claim_stream(conn: Conn, quiet_s: float) -> StreamKey | None:
    row = conn.execute(
        # A recording analysed before starts where its earlier batches did, not at the new ones.
        """select q.patient_id, q.device_id, q.stream_id, least(q.first_time, a.first_time)
           from imu_stream_queue q left join stream_analyses a using (device_id, stream_id)
           where q.last_arrival < clock_timestamp() - make_interval(secs => %s)
           order by q.last_arrival limit 1 for update of q skip locked""",
        (quiet_s,),
    ).fetchone()
    return StreamKey(*row) if row else None


def load_batches(conn: Conn, key: StreamKey) -> list[ImuBatch]:
    rows = conn.execute(
        """select frame from imu_batches
           where device_id = %s and stream_id = %s and time >= %s order by time""",
        (key.device_id, key.stream_id, key.first_time),
    ).fetchall()
    batches = []
    for (frame,) in rows:
        event = decode(bytes(frame))
        assert isinstance(event, ImuBatch)
        batches.append(event)
    return batches


def assemble(batches: list[ImuBatch]) -> tuple[datetime, np.ndarray, np.ndarray, np.ndarray]:
    """One time base for all batches; overlapping samples (a resent, re-cut batch) kept once."""
    origin = min(b.t0 for b in batches)
    t = np.concatenate([(b.t0 - origin).total_seconds() + b.times_s() for b in batches])
    acc = np.concatenate([b.acc_si() for b in batches]).astype(np.float64)
    gyr = np.concatenate([b.gyr_si() for b in batches]).astype(np.float64)
    order = np.argsort(t, kind="stable")
    t, acc, gyr = t[order], acc[order], gyr[order]
    # Samples closer than a quarter period to their predecessor are the same sample sent twice.
    min_step = 0.25 / max(b.sample_rate_hz for b in batches)
    keep = np.concatenate(([True], np.diff(t) > min_step))
    return origin, t[keep], acc[keep], gyr[keep]


def find_session(conn: Conn, key: StreamKey, margin_s: float, max_session_s: float) -> tuple[str, str] | None:
    row = conn.execute(
        """select session_id, exercise from exercise_sessions
           where patient_id = %(p)s and device_id = %(d)s
             and coalesce(started_at, ended_at - %(longest)s) - %(margin)s <= %(t)s
             and coalesce(ended_at, started_at + %(longest)s) + %(margin)s >= %(t)s
           order by coalesce(started_at, ended_at) desc limit 1""",
        {"p": key.patient_id, "d": key.device_id, "t": key.first_time,
         "margin": timedelta(seconds=margin_s), "longest": timedelta(seconds=max_session_s)},
    ).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def set_id(key: StreamKey, index: int, start: datetime) -> uuid.UUID:
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"exercise_set|{key.device_id}|{key.stream_id}|{index}|{time_key(start)}")


def _previous_span(conn: Conn, key: StreamKey) -> tuple[datetime | None, datetime | None]:
    row = conn.execute(
        "select min(time), max(end_time) from exercise_sets where device_id = %s and stream_id = %s",
        (key.device_id, key.stream_id),
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def _replace_results(conn: Conn, key: StreamKey, origin: datetime, session_id: str | None,
                     exercise: str | None, episode_id: str | None, analysis: ExerciseAnalysis | None) -> None:
    conn.execute(
        """delete from rep_results where set_id in (
               select set_id from exercise_sets where device_id = %s and stream_id = %s)""",
        (key.device_id, key.stream_id),
    )
    conn.execute("delete from exercise_sets where device_id = %s and stream_id = %s", (key.device_id, key.stream_id))
    if analysis is None:
        return
    sets, reps = [], []
    for i, s in enumerate(analysis.sets):
        start = origin + timedelta(seconds=s.start_s)
        sid = set_id(key, i, start)
        sets.append((start, sid, key.patient_id, episode_id, key.device_id, key.stream_id, session_id, exercise,
                     origin + timedelta(seconds=s.end_s), s.count, s.n_partial, s.n_pauses,
                     _finite(s.reps_per_min), _finite(s.rom.median_deg), _finite(s.rom.max_deg), s.rom_kind,
                     bool(s.rom_plausible), ALGORITHM_VERSION))
        for j, r in enumerate(s.reps):
            reps.append((origin + timedelta(seconds=r.start_s), sid, j, key.patient_id,
                         origin + timedelta(seconds=r.end_s), _finite(r.rom_deg), bool(r.partial),
                         bool(r.paused_before or r.held)))
    with conn.cursor() as cur:
        cur.executemany(
            """insert into exercise_sets (time, set_id, patient_id, episode_id, device_id, stream_id, session_id,
                   exercise, end_time, rep_count, partial_reps, pauses, reps_per_min, rom_median_deg, rom_max_deg,
                   rom_kind, rom_plausible, algorithm_version)
               values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            sets,
        )
        cur.executemany(
            """insert into rep_results (time, set_id, rep_index, patient_id, end_time, rom_deg, partial, paused)
               values (%s, %s, %s, %s, %s, %s, %s, %s)""",
            reps,
        )


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def analyse_stream(conn: Conn, key: StreamKey, margin_s: float, max_session_s: float) -> StreamOutcome:
    """Analyse one claimed recording inside the caller's transaction and dequeue it."""
    batches = load_batches(conn, key)
    origin, t, acc, gyr = assemble(batches)
    last_time = origin + timedelta(seconds=float(t[-1]))
    episode_id = next((b.episode_id for b in batches if b.episode_id), None)
    session = find_session(conn, key, margin_s, max_session_s)
    old_lo, old_hi = _previous_span(conn, key)
    analysis: ExerciseAnalysis | None = None
    detail: str | None = None
    if session is None:
        status, detail = "no_session", "no exercise session covers this recording yet"
    else:  # every exercise is counted; a kinematic model only gives ROM its joint-angle meaning
        try:
            analysis = analyze_exercise(ImuRecording(t, acc, gyr), session[1])
            status = "analysed"
        except SignalInputError as exc:
            status, detail = "rejected", f"{type(exc).__name__}: {exc}"
    _replace_results(conn, key, origin, session[0] if session else None, session[1] if session else None,
                     episode_id, analysis)
    n_sets = len(analysis.sets) if analysis else 0
    n_reps = analysis.n_reps if analysis else 0
    conn.execute(
        """insert into stream_analyses (device_id, stream_id, patient_id, session_id, exercise, status, detail,
               first_time, last_time, samples, batches, sets, reps, algorithm_version)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           on conflict (device_id, stream_id) do update set session_id = excluded.session_id,
               exercise = excluded.exercise, status = excluded.status, detail = excluded.detail,
               first_time = excluded.first_time, last_time = excluded.last_time, samples = excluded.samples,
               batches = excluded.batches, sets = excluded.sets, reps = excluded.reps,
               algorithm_version = excluded.algorithm_version, analysed_at = now()""",
        (key.device_id, key.stream_id, key.patient_id, session[0] if session else None,
         session[1] if session else None, status, detail, origin, last_time, int(t.size), len(batches), n_sets,
         n_reps, ALGORITHM_VERSION),
    )
    span_lo = min(x for x in (origin, old_lo) if x is not None)
    span_hi = max(x for x in (last_time, old_hi) if x is not None)
    rebuild_day_facts(conn, [DayChange(key.patient_id, span_lo, span_hi)])
    conn.execute("delete from imu_stream_queue where device_id = %s and stream_id = %s",
                 (key.device_id, key.stream_id))
    rom = analysis.rom.median_deg if analysis else float("nan")
    return StreamOutcome(key, status, detail, int(t.size), n_sets, n_reps, _finite(rom), last_time)


def record_failure(conn: Conn, key: StreamKey, detail: str) -> StreamOutcome:
    """A claimed recording whose analysis failed for a reason other than its signal (a bug, a
    stored frame that no longer decodes): recorded as rejected with the error and dequeued, so that
    it cannot hold up the queue; a later batch of it queues it again."""
    conn.execute(
        """insert into stream_analyses (device_id, stream_id, patient_id, status, detail, first_time, last_time,
               samples, batches, algorithm_version)
           values (%s, %s, %s, 'rejected', %s, %s, %s, 0, 0, %s)
           on conflict (device_id, stream_id) do update set status = 'rejected', detail = excluded.detail,
               analysed_at = now()""",
        (key.device_id, key.stream_id, key.patient_id, detail[:1000], key.first_time, key.first_time,
         ALGORITHM_VERSION),
    )
    conn.execute("delete from imu_stream_queue where device_id = %s and stream_id = %s",
                 (key.device_id, key.stream_id))
    return StreamOutcome(key, "rejected", detail, 0, 0, 0, None, key.first_time)
