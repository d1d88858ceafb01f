"""`rtm run`: the whole pipeline end to end on the embedded local stack with a simulated cohort.

Starts the stack, migrates, seeds the simulated clinic, starts a stream worker, pushes every
event the cohort's devices send through the real broker while they are generated, waits until
the database holds all of it and every recording is analysed, and prints a per-patient summary.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
from scipy import stats

from device_adapters.simulated.cohort import Cohort, Truth, make_cohort, patient_events
from device_adapters.simulated.seed import seed_care_context
from processors.supervisor import start_worker
from rtm import stack
from rtm.contract import encode
from rtm.db.migrate import migrate
from rtm.kafka import make_producer
from rtm.settings import Settings, get_settings
from rtm.topics import TOPIC_BY_KIND


@dataclass
class Produced:
    kinds: Counter[str] = field(default_factory=Counter)
    truth: dict[str, Truth] = field(default_factory=dict)


_last_line = [0.0]


def _progress(label: str, done: int, total: int, extra: str = "") -> None:
    width = 30
    filled = int(width * min(done, total) / max(total, 1))
    line = f"{label:<12} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {extra}"
    if sys.stdout.isatty():
        sys.stdout.write(f"\r{line}   ")
        sys.stdout.flush()
    elif time.monotonic() - _last_line[0] > 5 or done >= total:  # a log, not a terminal: a line now and then
        print(line, flush=True)
        _last_line[0] = time.monotonic()


async def _produce(settings: Settings, cohort: Cohort) -> Produced:
    out = Produced()
    producer = make_producer(settings)
    await producer.start()
    try:
        for i, p in enumerate(cohort.patients, 1):
            truth = out.truth.setdefault(p.patient_id, Truth())
            pending = []
            for event in patient_events(cohort, p, truth):
                pending.append(await producer.send(TOPIC_BY_KIND[event.kind].name, encode(event), key=event.key()))
                out.kinds[event.kind] += 1
            await asyncio.gather(*pending)  # acks=all: the broker has them
            _progress("producing", i, len(cohort.patients), f"patients ({sum(out.kinds.values())} events)")
        print()
    finally:
        await producer.stop()
    return out


def _landed(conn: psycopg.Connection[Any], ids: list[str]) -> dict[str, int]:
    row = conn.execute(
        """select (select count(*) from imu_batches where patient_id = any(%(ids)s)),
                  (select count(*) from activity_intervals where patient_id = any(%(ids)s)),
                  (select count(*) from exercise_sessions where patient_id = any(%(ids)s) and started_at is not null
                     and ended_at is not null),
                  (select count(*) from imu_stream_queue where patient_id = any(%(ids)s)),
                  (select count(*) from stream_analyses where patient_id = any(%(ids)s))""",
        {"ids": ids},
    ).fetchone()
    assert row is not None
    return dict(zip(("imu_batch", "activity_interval", "sessions", "queued", "analysed"), map(int, row),
                    strict=True))


def _rom_trend(days: list[float], rom: list[float]) -> str:
    """Theil-Sen slope of per-session ROM (Sen 1968), degrees per week."""
    if len(rom) < 4:
        return "n/a"
    slope, _, lo, hi = stats.theilslopes(rom, days)
    return f"{7 * slope:+5.1f}°/wk" + ("" if lo * hi > 0 else " (flat)")


def _summary(conn: psycopg.Connection[Any], cohort: Cohort, produced: Produced) -> None:
    ids = [p.patient_id for p in cohort.patients]
    days = {
        (r[0], int(r[1])): int(r[2]) for r in conn.execute(
            """select f.patient_id, (f.local_date - e.start_date) / 30 as period, count(distinct f.local_date)
               from data_day_facts f join episodes e on e.episode_id = f.episode_id
               where f.patient_id = any(%s) and f.qualifying group by 1, 2""", (ids,))
    }
    sets: dict[str, list[tuple[float, float, int]]] = {}
    for patient, day, rom, reps in conn.execute(
        """select s.patient_id, extract(epoch from s.time - e.start_date::timestamptz) / 86400,
                  s.rom_median_deg, s.rep_count
           from exercise_sets s join episodes e on e.episode_id = s.episode_id
           where s.patient_id = any(%s) order by s.time""", (ids,)):
        sets.setdefault(patient, []).append((float(day), float(rom) if rom is not None else np.nan, int(reps)))
    periods = max((k[1] for k in days), default=0) + 1
    head = "".join(f"{f'days p{k + 1}':>9}" for k in range(periods))
    print(f"\n{'patient':<15}{'exercise':<20}{'trend':<11}{head}{'sessions':>9}{'reps':>12}{'ROM trend':>18}")
    print(f"{'':<15}{'':<20}{'(sim)':<11}{'':>{9 * periods}}{'':>9}{'found/true':>12}")
    for p in cohort.patients:
        rows = sets.get(p.patient_id, [])
        found = sum(r[2] for r in rows)
        truth = produced.truth.get(p.patient_id, Truth())
        per_day: dict[int, list[float]] = {}
        for day, rom, _ in rows:
            if np.isfinite(rom):
                per_day.setdefault(int(day), []).append(rom)
        trend = _rom_trend(list(map(float, per_day)), [float(np.median(v)) for v in per_day.values()])
        cols = "".join(f"{days.get((p.patient_id, k), 0):>9}" for k in range(periods))
        print(f"{p.patient_id:<15}{p.exercise:<20}{p.trend:<11}{cols}{truth.sessions:>9}"
              f"{f'{found}/{truth.reps}':>12}{trend:>18}")
    total_found = sum(r[2] for rows in sets.values() for r in rows)
    total_true = sum(t.reps for t in produced.truth.values())
    print(f"\nrepetitions found {total_found} of {total_true} simulated "
          f"({100 * total_found / max(total_true, 1):.1f}%); data days count distinct patient-local dates "
          f"with qualifying data per 30-day device period")


def run_main_job(patients: int, days: int, seed: int) -> int:
    settings = get_settings()
    started = time.monotonic()
    for line in stack.up(settings):
        print(f"stack: {line}")
    applied = migrate(settings)
    print(f"migrations: {', '.join(applied) if applied else 'up to date'}")

    cohort = make_cohort(patients, days, seed)
    ids = [p.patient_id for p in cohort.patients]
    with psycopg.connect(settings.dsn("writer"), autocommit=True) as conn:
        seed_care_context(conn, cohort)
        before = _landed(conn, ids)
    print(f"cohort: {patients} patients x {days} days from {cohort.start}, seed {seed}")

    worker = start_worker(settings)
    try:
        produced = asyncio.run(_produce(settings, cohort))
        print("events: " + ", ".join(f"{v} {k}" for k, v in sorted(produced.kinds.items())))
        expected_sessions = sum(t.sessions for t in produced.truth.values())
        deadline = time.monotonic() + 600
        with psycopg.connect(settings.dsn("reader"), autocommit=True) as conn:
            while True:
                landed = _landed(conn, ids)
                stored = landed["imu_batch"] + landed["activity_interval"]
                want = produced.kinds["imu_batch"] + produced.kinds["activity_interval"]
                done = (stored >= want and landed["sessions"] >= expected_sessions and landed["queued"] == 0
                        and landed["analysed"] >= expected_sessions)
                _progress("processing", landed["analysed"], expected_sessions,
                          f"recordings analysed, {stored}/{want} batches and intervals stored")
                if done:
                    break
                if time.monotonic() > deadline:
                    print(f"\nERROR: the pipeline did not finish: {landed}; see {worker.log}")
                    return 1
                time.sleep(0.5)
            print()
            new = landed["imu_batch"] - before["imu_batch"], landed["activity_interval"] - before["activity_interval"]
            print(f"new rows this run: {new[0]} IMU batches, {new[1]} step intervals"
                  + (" (a replay of an earlier run: nothing was duplicated)" if new == (0, 0) else ""))
            _summary(conn, cohort, produced)
    finally:
        worker.stop()
    print(f"\ndone in {time.monotonic() - started:.1f} s")
    return 0
