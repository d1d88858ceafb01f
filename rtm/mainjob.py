"""`rtm run`: the whole pipeline end to end on the embedded local stack with a simulated cohort.

Starts the stack, migrates, seeds the simulated clinic, starts a stream worker, pushes every
event the cohort's devices send through the real broker, waits until the database has all of
it, and prints what landed per patient.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter

import psycopg

from device_adapters.simulated.cohort import Cohort, make_cohort, patient_events
from device_adapters.simulated.seed import seed_care_context
from processors.supervisor import start_worker
from rtm import stack
from rtm.contract import Event, encode
from rtm.db.migrate import migrate
from rtm.kafka import make_producer
from rtm.settings import Settings, get_settings
from rtm.topics import TOPIC_BY_KIND


def _progress(label: str, done: int, total: int) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stdout.write(f"\r{label:<22} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    sys.stdout.flush()


async def _produce(settings: Settings, events: list[Event]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        pending = []
        for i, event in enumerate(events, 1):
            fut = await producer.send(TOPIC_BY_KIND[event.kind].name, encode(event), key=event.key())
            pending.append(fut)
            if len(pending) >= 500:
                await asyncio.gather(*pending)  # acks=all: the broker has them
                pending.clear()
                _progress("producing", i, len(events))
        await asyncio.gather(*pending)
        _progress("producing", len(events), len(events))
        print()
    finally:
        await producer.stop()


def _landed(conn: psycopg.Connection, patients: list[str]) -> tuple[int, int]:
    imu = conn.execute("select count(*) from imu_batches where patient_id = any(%s)", (patients,)).fetchone()
    act = conn.execute("select count(*) from activity_intervals where patient_id = any(%s)", (patients,)).fetchone()
    return (int(imu[0]) if imu else 0, int(act[0]) if act else 0)


def _summary(conn: psycopg.Connection, cohort: Cohort) -> None:
    ids = [p.patient_id for p in cohort.patients]
    rows = conn.execute(
        """
        with imu as (
            select patient_id, count(*) as batches, sum(n_samples) as samples,
                   count(distinct (time at time zone 'UTC')::date) as exercise_days
            from imu_batches where patient_id = any(%(ids)s) group by patient_id),
        act as (
            select patient_id, sum(steps) as steps, count(distinct (time at time zone 'UTC')::date) as step_days
            from activity_intervals where patient_id = any(%(ids)s) and not deleted group by patient_id)
        select p.patient_id, coalesce(imu.exercise_days, 0), coalesce(imu.batches, 0),
               coalesce(imu.samples, 0), coalesce(act.step_days, 0), coalesce(act.steps, 0)
        from unnest(%(ids)s::text[]) as p(patient_id)
        left join imu using (patient_id) left join act using (patient_id)
        order by p.patient_id
        """,
        {"ids": ids},
    ).fetchall()
    print(f"\n{'patient':<16}{'exercise days':>14}{'IMU batches':>13}{'IMU samples':>13}{'step days':>11}{'steps':>9}")
    for r in rows:
        print(f"{r[0]:<16}{r[1]:>14}{r[2]:>13}{r[3]:>13}{r[4]:>11}{r[5]:>9}")


def run_main_job(patients: int, days: int, seed: int) -> int:
    settings = get_settings()
    started = time.monotonic()
    for line in stack.up(settings):
        print(f"stack: {line}")
    applied = migrate(settings)
    print(f"migrations: {', '.join(applied) if applied else 'up to date'}")

    cohort = make_cohort(patients, days, seed)
    with psycopg.connect(settings.dsn("writer"), autocommit=True) as conn:
        seed_care_context(conn, cohort)
        before = _landed(conn, [p.patient_id for p in cohort.patients])

    events = [e for p in cohort.patients for e in patient_events(cohort, p)]
    kinds = Counter(e.kind for e in events)
    expected = (kinds["imu_batch"], kinds["activity_interval"])
    print(f"cohort: {patients} patients x {days} days -> {len(events)} events "
          f"({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))})")

    worker = start_worker(settings)
    try:
        asyncio.run(_produce(settings, events))
        ids = [p.patient_id for p in cohort.patients]
        deadline = time.monotonic() + 120
        with psycopg.connect(settings.dsn("reader"), autocommit=True) as conn:
            while (landed := _landed(conn, ids)) != expected:
                _progress("stored", sum(landed), sum(expected))
                if time.monotonic() > deadline:
                    print(f"\nERROR: only {landed} of {expected} (IMU batches, activity intervals) landed; "
                          f"see {worker.log}")
                    return 1
                time.sleep(0.3)
            _progress("stored", sum(landed), sum(expected))
            print()
            new = (landed[0] - before[0], landed[1] - before[1])
            print(f"new rows this run: {new[0]} IMU batches, {new[1]} activity intervals"
                  + (" (a replay of an earlier run: nothing was duplicated)" if new == (0, 0) else ""))
            _summary(conn, cohort)
    finally:
        worker.stop()
    print(f"\ndone in {time.monotonic() - started:.1f} s")
    return 0


