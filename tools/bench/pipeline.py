"""`rtm bench pipeline`: IMU samples per second through produce -> broker -> worker -> database.

Sets up a private broker and a scratch database (both removed afterwards) and a stream worker.
A load generator in a second process plays N patients exercising at once, each phone sending
one batch per `--batch-s` seconds of 100 Hz data in real time, for `--seconds`. Latency is from
the generator handing a batch to the producer to the worker's database transaction that stored
it (`imu_batches.received_at`); throughput is what reached the database per second between the
first and the last store. The baseline sends the same kind of data one sample per message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from processors.supervisor import WorkerProcess, start_worker, wait_ready
from rtm.contract import ImuBatch, Provenance, encode
from rtm.db.migrate import migrate
from rtm.kafka import make_producer
from rtm.settings import Settings, get_settings
from rtm.stack import postgres
from rtm.stack.broker import PrivateBroker, free_port
from rtm.topics import RAW_IMU


def _load(settings_json: str, patients: int, seconds: float, batch_s: float, rate_hz: float, tag: str,
          out: str) -> None:
    """The load generator (runs in its own process): real-time paced batches from many patients."""
    settings = Settings.model_validate_json(settings_json)
    asyncio.run(_load_async(settings, patients, seconds, batch_s, rate_hz, tag, Path(out)))


async def _load_async(settings: Settings, patients: int, seconds: float, batch_s: float, rate_hz: float, tag: str,
                      out: Path) -> None:
    rng = np.random.default_rng(0)
    n = max(1, round(batch_s * rate_hz))
    acc = (rng.normal(0, 1, (n, 3)) + np.array([0.0, 0.0, 9.81])).astype(np.float32)
    gyr = rng.normal(0, 0.3, (n, 3)).astype(np.float32)
    provs = [Provenance(adapter="bench", vendor="bench", device_id=f"bench-{tag}-{i}") for i in range(patients)]
    producer = make_producer(settings)
    await producer.start()
    sent: list[tuple[str, float, int]] = []
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    start = time.monotonic()
    wall0 = time.time()
    try:
        ticks = int(seconds / batch_s)
        for k in range(ticks):
            # Patients are spread evenly over each batch interval, as real phones would be.
            for i, prov in enumerate(provs):
                due = start + k * batch_s + batch_s * i / patients
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                batch = ImuBatch(patient_id=f"pat-{tag}-{i}", provenance=prov, stream_id=f"s-{tag}",
                                 body_site="thigh_left", t0=origin + timedelta(seconds=k * batch_s),
                                 sample_rate_hz=rate_hz, acc=acc, gyr=gyr)
                t_send = wall0 + (time.monotonic() - start)
                await producer.send(RAW_IMU.name, encode(batch), key=batch.key())
                sent.append((str(batch.id), t_send, n))
        await producer.flush()
    finally:
        await producer.stop()
    out.write_text(json.dumps(sent))


def _run_phase(settings: Settings, patients: int, seconds: float, batch_s: float, rate_hz: float,
               workdir: Path) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    out = workdir / f"load-{tag}.json"
    proc = mp.get_context("spawn").Process(
        target=_load, args=(settings.model_dump_json(), patients, seconds, batch_s, rate_hz, tag, str(out)))
    proc.start()
    proc.join(seconds + 120)
    if proc.exitcode != 0:
        raise RuntimeError(f"load generator failed (exit {proc.exitcode})")
    sent = {eid: (t, n) for eid, t, n in json.loads(out.read_text())}
    deadline = time.monotonic() + 300
    with psycopg.connect(settings.dsn("reader")) as conn:
        while True:
            rows = conn.execute(
                "select event_id::text, extract(epoch from received_at) from imu_batches where device_id like %s",
                (f"bench-{tag}-%",)).fetchall()
            if len(rows) >= len(sent) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    stored = {eid: float(at) for eid, at in rows}
    lat = np.array([stored[e] - sent[e][0] for e in sent if e in stored])
    samples = sum(sent[e][1] for e in stored if e in sent)
    # Sustained rate: what reached the database per second between the first and the last store.
    span = max(stored.values()) - min(stored.values()) if len(stored) > 1 else float("nan")
    return {
        "messages": len(sent), "stored": len(stored), "samples": samples,
        "samples_per_s": samples / span if span > 0 else 0.0,
        "p50_s": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p99_s": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "span_s": span,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rtm bench pipeline", description=__doc__)
    # 25% above the target (2,000 patients at 100 Hz), so that keeping up is shown, not assumed.
    parser.add_argument("--patients", type=int, default=2500, help="patients exercising at once")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch-s", type=float, default=10.0, help="seconds of data per uploaded batch")
    parser.add_argument("--rate-hz", type=float, default=100.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--baseline-patients", type=int, default=200)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)

    with PrivateBroker(get_settings()) as private:
        settings = private.settings.model_copy(update={
            "pg_database": f"rtm_bench_{uuid.uuid4().hex[:6]}", "app_id": f"rtm-bench-{uuid.uuid4().hex[:6]}",
        })
        postgres.up(settings)
        postgres.ensure_database(settings)
        migrate(settings)
        workers: list[WorkerProcess] = []
        try:
            workers = [start_worker(settings, port=free_port(), wait=False) for _ in range(args.workers)]
            wait_ready(workers)
            main_phase = _run_phase(settings, args.patients, args.seconds, args.batch_s, args.rate_hz,
                                    settings.state_dir)
            # The baseline: one sample per message, as a naive device bridge would send.
            baseline = _run_phase(settings, args.baseline_patients, args.baseline_seconds, 1.0 / args.rate_hz,
                                  args.rate_hz, settings.state_dir)
        finally:
            for w in workers:
                w.stop()
            with postgres.admin_connect(settings) as conn:
                drop = sql.SQL("drop database if exists {} with (force)")
                conn.execute(drop.format(sql.Identifier(settings.pg_database)))

    offered = args.patients * args.rate_hz
    print(f"pipeline on loopback: {args.workers} worker(s), private Tansu broker, scratch TimescaleDB; "
          f"load generator in a second process")
    print(f"{'phase':<28}{'samples/msg':>12}{'messages':>10}{'stored':>9}{'samples/s':>12}{'p50 s':>8}{'p99 s':>8}")
    for name, r, per in (("batched (real-time phones)", main_phase, int(args.batch_s * args.rate_hz)),
                         ("baseline (1 sample/msg)", baseline, 1)):
        print(f"{name:<28}{per:>12}{r['messages']:>10}{r['stored']:>9}{r['samples_per_s']:>12,.0f}"
              f"{r['p50_s']:>8.3f}{r['p99_s']:>8.3f}")
    met = main_phase["samples_per_s"] >= 200_000 and main_phase["p99_s"] < 2.0
    print(f"offered {offered:,.0f} samples/s ({args.patients} patients at {args.rate_hz:g} Hz) for {args.seconds:g} s; "
          f"target >= 200,000 samples/s with p99 < 2 s: {'met' if met else 'NOT met'}")
    print(json.dumps({
        "samples_per_s": round(main_phase["samples_per_s"]), "p50_s": round(main_phase["p50_s"], 3),
        "p99_s": round(main_phase["p99_s"], 3), "baseline_samples_per_s": round(baseline["samples_per_s"]),
    }))
    return 0 if met else 1
