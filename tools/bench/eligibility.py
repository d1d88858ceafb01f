"""Benchmark: recompute RTM eligibility for N patients with D days of data each, against its floor.

Builds a scratch database (migrated like production), bulk-loads a synthetic cohort with COPY, then
runs rounds of the recompute (every patient marked, the incremental loop: claim, load, compute,
write every row) and of the floor (the same input queries and the same result rows in one COPY per
connection into an unlogged copy of the results table), with the same processes, connections and
batches, in alternating order. The scratch database is dropped afterwards. Prints a table, then one
JSON line: patients, seconds, floor_seconds, ratio_to_floor (medians over the rounds)."""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import resource
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import median
from typing import Any

import numpy as np
import orjson
import psycopg
from psycopg import sql

from eligibility.store import (
    RESULT_COLUMNS,
    RecomputeStats,
    fetch_inputs,
    mark_all,
    recompute_dirty,
    recompute_dirty_parallel,
    shares,
)

FIRST_DAY = date(2026, 1, 5)


def _copy(conn: psycopg.Connection[Any], table: str, columns: str, lines: Iterator[str]) -> None:
    with conn.cursor().copy(f"copy {table} ({columns}) from stdin") as copy:
        buf = io.StringIO()
        for n, line in enumerate(lines, 1):
            buf.write(line)
            if n % 50_000 == 0:
                copy.write(buf.getvalue())
                buf = io.StringIO()
        copy.write(buf.getvalue())


def generate(conn: psycopg.Connection[Any], patients: int, days: int, seed: int) -> dict[str, int]:
    """A cohort: one clinic per 500 patients, one PT episode and one qualifying device each, data on
    ~75% of days, and a few therapist time entries per month. Loaded with triggers off (a bulk load);
    the benchmark marks every patient itself."""
    rng = np.random.default_rng(seed)
    clinics = max(1, patients // 500)
    conn.execute("set session_replication_role = replica")  # bulk load: no per-row triggers
    _copy(conn, "clinics", "clinic_id, name", (f"c{c}\tClinic {c}\n" for c in range(clinics)))
    _copy(
        conn, "practitioners", "practitioner_id, clinic_id, role, discipline, display_name",
        (f"{who}{c}\tc{c}\t{role}\tPT\t{who}{c}\n" for c in range(clinics)
         for who, role in (("pt", "therapist"), ("pta", "assistant"))),
    )  # fmt: skip
    conn.execute(
        "insert into device_models (model_id, vendor, name, qualifying_medical_device) "
        "values ('m1', 'v', 'imu', true)"
    )
    ids = [f"p{i:06d}" for i in range(patients)]
    _copy(conn, "patients", "patient_id, clinic_id", (f"{p}\tc{i % clinics}\n" for i, p in enumerate(ids)))
    start = FIRST_DAY.isoformat()
    _copy(
        conn, "episodes",
        "episode_id, patient_id, clinic_id, discipline, billing_practitioner_id, start_date, setup_date, "
        "setup_documented_at, consent_at, plan_of_care_start",
        (f"e{p}\t{p}\tc{i % clinics}\tPT\tpt{i % clinics}\t{start}\t{start}\t{start} 09:00-05"
         f"\t{start} 09:00-05\t{start}\n" for i, p in enumerate(ids)),
    )  # fmt: skip
    _copy(conn, "devices", "device_id, model_id", (f"d{p}\tm1\n" for p in ids))
    _copy(
        conn, "device_assignments", "device_id, episode_id, patient_id, valid_from",
        (f"d{p}\te{p}\t{p}\t{start} 00:00-05\n" for p in ids),
    )  # fmt: skip
    _copy(
        conn, "patient_timezones", "patient_id, effective_from, tz",
        (f"{p}\t2025-01-01 00:00Z\tAmerica/New_York\n" for p in ids),
    )  # fmt: skip
    present = rng.random((patients, days)) < 0.75
    dates = [(FIRST_DAY + timedelta(days=k)).isoformat() for k in range(days)]

    def facts() -> Iterator[str]:
        for i, p in enumerate(ids):
            for k in np.flatnonzero(present[i]):
                ref = orjson.dumps(
                    [{"kind": "exercise_set", "id": str(uuid.UUID(int=i * 1000 + int(k)))}]
                ).decode()
                yield f"{dates[k]}\t{p}\td{p}\te{p}\tAmerica/New_York\t30\t2\t900\tt\t{ref}\n"

    _copy(
        conn, "data_day_facts",
        "local_date, patient_id, device_id, episode_id, tz, wear_minutes, exercise_sets, steps, qualifying, "
        "record_refs",
        facts(),
    )  # fmt: skip
    minutes = rng.integers(3, 16, size=(patients, days // 7))
    channels = ("video", "none", "secure_message", "audio")

    def entries() -> Iterator[str]:
        for i, p in enumerate(ids):
            c = i % clinics
            for w in range(days // 7):
                day = (FIRST_DAY + timedelta(days=7 * w + 2)).isoformat()
                who, role = ("pta", "assistant") if w % 5 == 4 else ("pt", "therapist")
                channel = channels[(i + w) % 4]
                activity = "interactive_communication" if channel != "none" else "data_review"
                yield (f"t{p}-{w}\t{uuid.uuid4()}\t{p}\te{p}\t{who}{c}\t{role}\tPT\t{activity}\t{channel}"
                       f"\t{day} 15:00Z\t{minutes[i, w]}\n")  # fmt: skip

    _copy(
        conn, "therapist_time_entries",
        "entry_id, event_id, patient_id, episode_id, practitioner_id, practitioner_role, discipline, "
        "activity, channel, started_at, minutes",
        entries(),
    )  # fmt: skip
    conn.execute("set session_replication_role = origin")
    conn.execute("analyze")
    return {"facts": int(present.sum()), "entries": patients * (days // 7)}


FLOOR_TABLE = "eligibility_results_floor"


Span = tuple[float, float, float, int, int, float]


def _floor_share(dsn: str, batches: list[list[str]], barrier: Any = None, out: Any = None) -> Span:
    """One connection's part of the floor: the engine's own input queries for its batches, then its
    result rows (as stored) in one COPY into the unlogged copy. The rows are fetched before the clock
    starts; with several processes they all start together at `barrier`. Returns (start, end of the
    reads, end, rows written, bytes written, CPU seconds of this process) on the monotonic clock
    shared by processes."""
    cols = ", ".join(RESULT_COLUMNS)
    ids = [p for b in batches for p in b]
    with psycopg.connect(dsn, autocommit=True) as conn:
        buf = io.BytesIO()
        query = f"copy (select {cols} from eligibility_results where patient_id = any(%s)) to stdout"
        with conn.cursor().copy(query, (ids,)) as rows_out:
            for chunk in rows_out:
                buf.write(chunk)
        rows = buf.getvalue()
        if barrier is not None:
            barrier.wait()
        t0, cpu = time.perf_counter(), time.process_time()
        for some in batches:
            fetch_inputs(conn, some)  # the recompute's own reads, one query per input table
        t1 = time.perf_counter()
        cur = conn.cursor()
        with cur.copy(f"copy {FLOOR_TABLE} ({cols}) from stdin") as copy:
            copy.write(rows)
        result = (t0, t1, time.perf_counter(), cur.rowcount, len(rows), time.process_time() - cpu)
    if out is not None:
        out.put(result)
    return result


@dataclass(slots=True)
class Floor:
    seconds: float
    read_s: float  # reading the inputs, summed over the processes
    copy_s: float  # the one COPY per connection, summed over the processes
    rows: int
    bytes: int
    cpu_s: float  # CPU seconds of the client processes


def measure_floor(admin: psycopg.Connection[Any], dsn: str, writer: str, workers: int, batch: int) -> Floor:
    """The floor: with the recompute's number of processes and connections and its batches (dealt
    the same way), read the same inputs with the engine's own queries and write the same result
    rows with one COPY per connection into an unlogged copy of the results table (same columns,
    defaults and indexes); no Python work in between."""
    admin.execute(f"drop table if exists {FLOOR_TABLE}")
    admin.execute(f"create unlogged table {FLOOR_TABLE} (like eligibility_results including all)")
    grant = sql.SQL("grant select, insert on {} to {}")
    admin.execute(grant.format(sql.Identifier(FLOOR_TABLE), sql.Identifier(writer)))
    try:
        ids = [(str(r[0]), 0) for r in admin.execute("select distinct patient_id from episodes order by 1")]
        parts = [[[p for p, _ in b] for b in share] for share in shares(ids, workers, batch)]
        if len(parts) == 1:
            spans = [_floor_share(dsn, parts[0])]
        else:
            ctx = mp.get_context("fork")
            barrier, out = ctx.Barrier(len(parts)), ctx.Queue()
            procs = [ctx.Process(target=_floor_share, args=(dsn, part, barrier, out)) for part in parts]
            for proc in procs:
                proc.start()
            spans = [out.get(timeout=3600) for _ in procs]
            for proc in procs:
                proc.join()
                if proc.exitcode != 0:
                    raise RuntimeError(f"floor process exited with {proc.exitcode}")
        return Floor(
            seconds=max(s[2] for s in spans) - min(s[0] for s in spans),
            read_s=sum(s[1] - s[0] for s in spans),
            copy_s=sum(s[2] - s[1] for s in spans),
            rows=sum(s[3] for s in spans),
            bytes=sum(s[4] for s in spans),
            cpu_s=sum(s[5] for s in spans),
        )
    finally:
        admin.execute(f"drop table if exists {FLOOR_TABLE}")


def _cpu() -> float:
    """CPU seconds of this process and of its waited-for children (the parallel recompute's workers)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def recompute(settings: Any, admin: psycopg.Connection[Any], as_of: date, workers: int, batch: int
              ) -> tuple[float, RecomputeStats, float]:
    """Every patient marked and recomputed into an emptied results table (every row written).
    Returns (seconds, stats, CPU seconds of the client processes)."""
    admin.execute("truncate eligibility_results cascade")  # a scratch database: nothing else refers to it
    with psycopg.connect(settings.dsn("writer"), autocommit=True) as conn:
        t0, cpu = time.perf_counter(), _cpu()
        mark_all(conn, "benchmark")
        if workers > 1:
            stats = recompute_dirty_parallel(conn, settings.dsn("writer"), as_of, workers, batch)
        else:
            stats = recompute_dirty(conn, as_of, batch=batch, pipelined=True)
        return time.perf_counter() - t0, stats, _cpu() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rtm bench eligibility", description=__doc__)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--workers", type=int, default=1,
        help="worker processes, one connection each, for the recompute and the floor alike",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--repeat", type=int, default=3,
        help="rounds of recompute and floor, in alternating order; the medians are reported (the machine "
        "is shared: one disturbed run does not move a median)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    from rtm.db.migrate import migrate
    from rtm.settings import get_settings
    from rtm.stack import postgres

    base = get_settings()
    name = f"rtm_bench_{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(update={"pg_database": name})
    t0 = time.perf_counter()
    postgres.ensure_database(settings)
    try:
        migrate(settings)
        # The admin role loads the cohort (it may switch triggers off for a bulk load).
        with postgres.admin_connect(settings, name) as admin:
            counts = generate(admin, args.patients, args.days, args.seed)
        load_s = time.perf_counter() - t0
        as_of = FIRST_DAY + timedelta(days=args.days + 5)
        runs: list[tuple[float, float]] = []
        load_before = os.getloadavg()[0]  # the machine may be shared: say how busy it was
        with postgres.admin_connect(settings, name) as admin:
            for r in range(max(1, args.repeat)):
                floor_first = r % 2 == 1  # alternate, so neither always runs on a warmer cache

                def floor() -> Floor:
                    return measure_floor(admin, settings.dsn("writer"), settings.pg_writer_user, args.workers,
                                         args.batch)

                if floor_first:
                    fl = floor()
                seconds, stats, cpu_s = recompute(settings, admin, as_of, args.workers, args.batch)
                if not floor_first:
                    fl = floor()
                runs.append((seconds, fl.seconds))
            codes = {
                str(k): int(str(v))
                for k, v in admin.execute(
                    "select c, count(*) from eligibility_results, unnest(codes) c group by c order by c"
                )
            }
        seconds, floor_s = median(r for r, _ in runs), median(f for _, f in runs)
        load_after = os.getloadavg()[0]
    finally:
        if not args.keep:
            with postgres.admin_connect(base) as admin:
                admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))

    many = len(runs) > 1
    rows = [
        ("patients", f"{stats.patients:,}"),
        ("data-day facts", f"{counts['facts']:,}"),
        ("time entries", f"{counts['entries']:,}"),
        ("results written", f"{stats.results:,}"),
        ("codes reached", ", ".join(f"{k} x{v:,}" for k, v in codes.items())),
        ("scratch setup + load (s)", f"{load_s:.2f}"),
        ("worker processes (connections)", f"{args.workers}"),
        ("last round's recompute, summed over workers:", ""),
        ("  load: input queries (I/O thread) + rows to inputs (s)", f"{stats.load_s:.2f}"),
        ("  compute, the engine (s)", f"{stats.compute_s:.2f}"),
        ("  serialise: JSON, hashes, COPY lines (s)", f"{stats.serialise_s:.2f}"),
        ("  write: plan + statements (s, I/O thread)", f"{stats.save_s:.2f}"),
        ("  CPU of the client processes (s)", f"{cpu_s:.2f}"),
        ("  rows inserted / rewritten / unchanged", f"{stats.saved.inserted:,} / {stats.saved.updated:,} / "
         f"{stats.saved.unchanged:,}"),
        ("last round's floor, summed over workers:", ""),
        ("  read inputs (s)", f"{fl.read_s:.2f}"),
        ("  one COPY per connection (s)", f"{fl.copy_s:.2f}"),
        ("  CPU of the client processes (s)", f"{fl.cpu_s:.2f}"),
        ("runs: recompute / floor (s) = ratio", ", ".join(f"{r:.2f} / {f:.2f} = {r / f:.2f}" for r, f in runs)),
        ("recompute total (s)" + (", median" if many else ""), f"{seconds:.2f}"),
        ("patients / s", f"{stats.patients / seconds:,.0f}"),
        ("floor: read inputs + COPY (s)" + (", median" if many else ""), f"{floor_s:.2f}"),
        ("floor: result rows written", f"{fl.rows:,} ({fl.bytes / 1e6:.1f} MB)"),
        ("ratio to floor" + (" (of the medians)" if many else ""), f"{seconds / floor_s:.2f}"),
        ("load average (1 min) before / after the rounds", f"{load_before:.1f} / {load_after:.1f}"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    print(f"{'eligibility recompute':{width}}  value")
    print(f"{'-' * width}  {'-' * 12}")
    for k, v in rows:
        print(f"{k:{width}}  {v}")
    last = {
        "patients": stats.patients,
        "seconds": round(seconds, 3),
        "floor_seconds": round(floor_s, 3),
        "ratio_to_floor": round(seconds / floor_s, 3),
    }
    sys.stdout.write(orjson.dumps(last).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
