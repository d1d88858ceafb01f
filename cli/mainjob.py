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
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from cli.mainjob_ble import BleRoute, run_route, via_ble_report
from eligibility.store import recompute_dirty
from flags import evaluate_all
from flags.trends import theil_sen
from processors.supervisor import Supervisor
from rtm import stack
from rtm.contract import encode
from rtm.db.migrate import migrate
from rtm.kafka import make_producer
from rtm.settings import Settings, get_settings
from rtm.topics import TOPIC_BY_KIND
from simulation.cohort import CLINIC_ID, DEVICE_MODEL, THERAPIST_ID, Cohort, Truth, make_cohort, patient_events
from simulation.seed import seed_care_context


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


async def _produce(settings: Settings, cohort: Cohort, route: BleRoute | None = None) -> Produced:
    out = Produced()
    producer = make_producer(settings)
    await producer.start()
    try:
        for i, p in enumerate(cohort.patients, 1):
            truth = out.truth.setdefault(p.patient_id, Truth())
            pending = []
            for event in patient_events(cohort, p, truth):
                if route is not None and route.take(event):
                    continue  # it goes over BLE, after the cohort is produced
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
    """Whole-course ROM slope per week (the flags judge the last weeks; this is the overview)."""
    if len(rom) < 4:
        return "n/a"
    fit = theil_sen(rom, days)
    return f"{7 * fit.slope:+5.1f}°/wk" + ("" if fit.low * fit.high > 0 else " (flat)")


def _finish_derived(settings: Settings) -> None:
    """What the worker's timers would do next: eligibility for every changed patient, and the
    flag sweep, run now so that the summary is current."""
    with psycopg.connect(settings.dsn("writer"), autocommit=True) as conn:
        now = datetime.now(UTC)
        recompute_dirty(conn, now.date())
        evaluate_all(conn, now)


def _summary(conn: psycopg.Connection[Any], cohort: Cohort, produced: Produced) -> None:
    ids = [p.patient_id for p in cohort.patients]
    supply: dict[tuple[str, int], str] = {}
    for patient, period, days, codes in conn.execute(
        """select patient_id, period_index, data_days, codes from eligibility_results
           where patient_id = any(%s) and kind = 'supply'""", (ids,)):
        supply[(patient, int(period))] = f"{days} {'/'.join(codes) or '-'}"
    management: dict[str, list[str]] = {}
    for patient, codes in conn.execute(
        """select patient_id, codes from eligibility_results where patient_id = any(%s) and kind = 'management'
           order by bill_month""", (ids,)):
        management.setdefault(patient, []).extend(codes)
    flags: dict[str, list[str]] = {}
    for patient, kind, severity in conn.execute(
        """select patient_id, kind, severity from therapist_flags where patient_id = any(%s) and state <> 'resolved'
           order by kind""", (ids,)):
        flags.setdefault(patient, []).append(f"{kind}({severity[0]})")
    sets: dict[str, list[tuple[float, float, int]]] = {}
    for patient, day, rom, reps in conn.execute(
        """select s.patient_id, extract(epoch from s.time - e.start_date::timestamptz) / 86400,
                  s.rom_median_deg, s.rep_count
           from exercise_sets s join episodes e on e.episode_id = s.episode_id
           where s.patient_id = any(%s) order by s.time""", (ids,)):
        sets.setdefault(patient, []).append((float(day), float(rom) if rom is not None else np.nan, int(reps)))
    periods = max((k[1] for k in supply), default=0) + 1
    head = "".join(f"{f'period {k + 1}':>14}" for k in range(periods))
    print(f"\n{'patient':<25}{'exercise':<19}{'sim':<11}{head}{'reps':>11}{'ROM trend':>17}  "
          f"{'management codes':<22}open flags")
    print(f"{'':<25}{'':<19}{'':<11}{'(days code)':>14}{'':>{14 * (periods - 1)}}{'found/true':>11}")
    for p in cohort.patients:
        rows = sets.get(p.patient_id, [])
        found = sum(r[2] for r in rows)
        truth = produced.truth.get(p.patient_id, Truth())
        per_day: dict[int, list[float]] = {}
        for day, rom, _ in rows:
            if np.isfinite(rom):
                per_day.setdefault(int(day), []).append(rom)
        trend = _rom_trend(list(map(float, per_day)), [float(np.median(v)) for v in per_day.values()])
        cols = "".join(f"{supply.get((p.patient_id, k), '-'):>14}" for k in range(periods))
        codes = ",".join(sorted(set(management.get(p.patient_id, [])))) or "-"
        print(f"{p.patient_id:<25}{p.exercise:<19}{p.trend:<11}{cols}{f'{found}/{truth.reps}':>11}{trend:>17}  "
              f"{codes:<22}{' '.join(flags.get(p.patient_id, [])) or '-'}")
    total_found = sum(r[2] for rows in sets.values() for r in rows)
    total_true = sum(t.reps for t in produced.truth.values())
    share = 100 * total_found / max(total_true, 1)
    print(f"\nrepetitions found: {total_found} of {total_true} simulated ({share:.1f}%)")
    print("period columns: patient-local data days in each 30-day device period and the supply code reached;"
          " flags: (l)ow/(m)edium/(h)igh severity")


def run_main_job(patients: int, days: int, seed: int, via_ble: int = 0) -> int:
    # The simulated phones upload each session whole, so a recording is complete once it is quiet
    # for a second.
    settings = get_settings().model_copy(update={"analysis_quiet_s": 1.0})
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

    supervisor = Supervisor(settings).start()
    try:
        route = BleRoute(via_ble) if via_ble > 0 else None
        produced = asyncio.run(_produce(settings, cohort, route))
        if route is not None:
            produced.kinds["imu_batch"] += via_ble_report(run_route(route, settings, CLINIC_ID, DEVICE_MODEL))
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
                    print(f"\nERROR: the pipeline did not finish: {landed}; see "
                          + ", ".join(str(w.log) for w in supervisor.workers))
                    return 1
                time.sleep(0.5)
            print()
            _finish_derived(settings)
            new = landed["imu_batch"] - before["imu_batch"], landed["activity_interval"] - before["activity_interval"]
            print(f"new rows this run: {new[0]} IMU batches, {new[1]} step intervals"
                  + (" (a replay of an earlier run: nothing was duplicated)" if new == (0, 0) else ""))
            _summary(conn, cohort, produced)
            from cli.vendor_demo import print_vendor_patients, run_vendor_patients
            from cli.vendor_demo_cloud import run_cloud_patients  # Google Health and Oura
            from cli.vendor_demo_wg import run_wg_patients  # Withings and Garmin
            if not print_vendor_patients(run_vendor_patients(settings, days, seed)
                                         + run_cloud_patients(settings, days, seed)
                                         + run_wg_patients(settings, days, seed)):
                return 1
    finally:
        supervisor.stop()
    from dashboards.demo import announce  # the clinic app's demo sign-in for this cohort's clinic

    print(announce(settings, CLINIC_ID, THERAPIST_ID))
    print(f"\ndone in {time.monotonic() - started:.1f} s")
    return 0
