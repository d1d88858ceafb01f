"""Load benchmark of the gateway: uvicorn serving the real app on loopback, backed by a private
Tansu broker and a scratch database on the local PostgreSQL; a load generator in a second process
uploads binary IMU frames (one device's minute at 100 Hz per request) as fast as the gateway
accepts them (`--acceptance outbox|broker`), then a baseline of one sample per request. Bounded in
time and requests; loopback only. Ends with one JSON line: samples_per_s, p50_ms, p99_ms,
baseline_samples_per_s, acceptance."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
from psycopg import sql

from ingest.tokens import DEVICE_PREFIX, hash_secret, new_token
from rtm.contract.codec import IMU_FRAME_VERSION, IMU_MAGIC
from rtm.db import connect
from rtm.db.migrate import migrate
from rtm.settings import Settings, get_settings
from rtm.stack import postgres
from rtm.stack.broker import PrivateBroker, free_port

FRAME = "application/vnd.rtm.imu-frame"
PEPPER = "bench-pepper"


@dataclass(frozen=True)
class Phase:
    name: str
    samples_per_request: int
    duration_s: float
    concurrency: int
    max_requests: int


def _frame(device: str, patient: str, t0: datetime, n: int, payload: bytes, rate: float) -> bytes:
    head = orjson.dumps(
        {
            "schema_version": 1,
            "patient_id": patient,
            "stream_id": "bench",
            "provenance": {"adapter": "bench", "vendor": "bench", "device_id": device},
            "body_site": "thigh_left",
            "t0": t0.isoformat(),
            "sample_rate_hz": rate,
            "acc_unit": "m/s^2",
            "gyr_unit": "rad/s",
            "n": n,
            "offsets": False,
        }
    )
    return IMU_MAGIC + bytes([IMU_FRAME_VERSION]) + len(head).to_bytes(4, "little") + head + payload


async def _drive(
    url: str, devices: list[tuple[str, str, str]], phase: Phase, start: datetime, rate: float, warmup_s: float
) -> dict[str, Any]:
    import aiohttp

    n = phase.samples_per_request
    rng = np.random.default_rng(1)
    acc = (rng.normal(0, 1, (n, 3)) + np.array([0.0, 0.0, 9.81])).astype("<f4")
    gyr = rng.normal(0, 0.2, (n, 3)).astype("<f4")
    payload = acc.tobytes() + gyr.tobytes()
    step = timedelta(seconds=n / rate)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    accepted = 0
    counter = 0
    loop = asyncio.get_running_loop()
    t_start = loop.time()
    t_measure = t_start + warmup_s
    t_end = t_measure + phase.duration_s
    measured_from = measured_to = 0.0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal accepted, counter, measured_from, measured_to
        while loop.time() < t_end and counter < phase.max_requests:
            k = counter
            counter += 1
            dev, patient, token = devices[k % len(devices)]
            t0 = start + step * (k // len(devices))
            body = _frame(dev, patient, t0, n, payload, rate)
            sent = loop.time()
            async with session.post(
                url, data=body, headers={"Content-Type": FRAME, "Authorization": f"Bearer {token}"}
            ) as resp:
                raw = await resp.read()
                status = resp.status
            done = loop.time()
            if sent >= t_measure and done <= t_end:
                measured_from = measured_from or sent
                measured_to = max(measured_to, done)
                latencies.append(done - sent)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 202:  # count what the gateway says is new, not duplicates
                    accepted += n * int(orjson.loads(raw)["accepted"])

    connector = aiohttp.TCPConnector(limit=phase.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(phase.concurrency)))
    window = max(1e-9, measured_to - measured_from)
    lat = np.array(latencies) * 1000.0 if latencies else np.array([float("nan")])
    return {
        "phase": phase.name,
        "samples_per_request": n,
        "requests": len(latencies),
        "window_s": window,
        "samples_per_s": accepted / window,
        "requests_per_s": len(latencies) / window,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "statuses": statuses,
    }


def _loadgen(
    url: str,
    devices: list[tuple[str, str, str]],
    phases: list[Phase],
    start: datetime,
    rate: float,
    warmup_s: float,
    out: Any,
) -> None:
    results = []
    for phase in phases:
        results.append(
            asyncio.run(
                _drive(url, devices, phase, start + timedelta(days=phases.index(phase)), rate, warmup_s)
            )
        )
    out.put(results)


def wait_gateway_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the gateway exited during startup")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.3) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if b" 200 " in s.recv(64):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the gateway did not become ready")


def _enrol(settings: Settings, count: int, valid_from: datetime) -> list[tuple[str, str, str]]:
    """Devices (one per patient) enrolled directly in the scratch database."""
    run = uuid.uuid4().hex[:6]
    rows, devices = [], []
    for i in range(count):
        cred_id, secret, token = new_token(DEVICE_PREFIX)
        dev, pat = f"bench-dev-{run}-{i}", f"bench-pat-{run}-{i}"
        rows.append((cred_id, dev, pat, f"bench-ep-{run}-{i}", hash_secret(PEPPER.encode(), secret)))
        devices.append((dev, pat, token))
    with connect("owner", settings, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("insert into clinics values ('bench-clinic', 'Benchmark clinic') on conflict do nothing")
        cur.execute(
            "insert into device_models (model_id, vendor, name) values ('bench-imu', 'bench', 'Bench IMU') "
            "on conflict do nothing"
        )
        cur.executemany(
            "insert into patients (patient_id, clinic_id) values (%s, 'bench-clinic')",
            [(r[2],) for r in rows],
        )
        cur.executemany(
            "insert into episodes (episode_id, patient_id, clinic_id, discipline, start_date) "
            "values (%s, %s, 'bench-clinic', 'PT', current_date - 30)",
            [(r[3], r[2]) for r in rows],
        )
        cur.executemany(
            "insert into devices (device_id, model_id) values (%s, 'bench-imu')", [(r[1],) for r in rows]
        )
        cur.executemany(
            "insert into ingest_device_credentials (credential_id, device_id, patient_id, episode_id, "
            "clinic_id, "
            "valid_from, secret_hash) values (%s, %s, %s, %s, 'bench-clinic', %s, %s)",
            [(r[0], r[1], r[2], r[3], valid_from, r[4]) for r in rows],
        )
    return devices


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _table(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'phase':<22}{'samples/req':>12}{'requests':>10}{'req/s':>10}{'samples/s':>14}{'p50 ms':>9}"
        f"{'p99 ms':>9}  statuses"
    ]
    for r in results:
        lines.append(
            f"{r['phase']:<22}{r['samples_per_request']:>12,}{r['requests']:>10,}{r['requests_per_s']:>10.1f}"
            f"{r['samples_per_s']:>14,.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}  "
            + ",".join(f"{k}:{v}" for k, v in sorted(r["statuses"].items()))
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rtm bench ingest", description=__doc__)
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds of the batch phase")
    p.add_argument("--baseline-duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--devices", type=int, default=1000, help="enrolled devices (one patient each)")
    p.add_argument("--rate", type=float, default=100.0, help="IMU sample rate, Hz")
    p.add_argument("--batch-seconds", type=float, default=60.0, help="recording seconds per request")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--baseline-concurrency", type=int, default=16)
    p.add_argument("--max-requests", type=int, default=200_000)
    p.add_argument(
        "--acceptance",
        choices=("outbox", "broker"),
        default=None,
        help="the gateway's acceptance mode (default: RTM_GATEWAY_ACCEPTANCE, else outbox)",
    )
    args = p.parse_args(argv)
    acceptance = args.acceptance or os.environ.get("RTM_GATEWAY_ACCEPTANCE", "outbox")

    base = get_settings()
    postgres.up(base)
    db_name = f"rtm_bench_{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(update={"pg_database": db_name})
    postgres.ensure_database(settings)
    gateway: subprocess.Popen[bytes] | None = None
    try:
        migrate(settings)
        now = datetime.now(UTC)
        devices = _enrol(settings, args.devices, now - timedelta(days=30))
        with PrivateBroker(settings) as broker:
            port = free_port()
            env = {
                **os.environ,
                "RTM_PG_DATABASE": db_name,
                "RTM_KAFKA_BOOTSTRAP": broker.settings.kafka_bootstrap,
                "RTM_GATEWAY_PEPPER": PEPPER,
                "RTM_GATEWAY_LOG_LEVEL": "warning",
                "RTM_GATEWAY_ACCEPTANCE": acceptance,
            }
            gateway = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "ingest.app:app_factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
            )
            wait_gateway_ready(port, gateway)
            n = int(args.rate * args.batch_seconds)
            phases = [
                Phase(
                    f"batched ({args.batch_seconds:g} s/req)",
                    n,
                    args.duration,
                    args.concurrency,
                    args.max_requests,
                ),
                Phase(
                    "baseline (1 sample/req)",
                    1,
                    args.baseline_duration,
                    args.baseline_concurrency,
                    args.max_requests,
                ),
            ]
            ctx = mp.get_context("spawn")
            queue = ctx.Queue()
            gen = ctx.Process(
                target=_loadgen,
                args=(
                    f"http://127.0.0.1:{port}/v1/events",
                    devices,
                    phases,
                    now - timedelta(days=29),
                    args.rate,
                    args.warmup,
                    queue,
                ),
            )
            gen.start()
            budget = sum(ph.duration_s + args.warmup for ph in phases) + 120
            try:
                results: list[dict[str, Any]] = queue.get(timeout=budget)
            finally:
                gen.join(timeout=10)
                if gen.is_alive():
                    gen.terminate()
                _stop(gateway)  # before the broker goes away
    finally:
        _stop(gateway)
        with postgres.admin_connect(base) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(db_name)))

    batched, baseline = results
    print(
        f"ingest gateway on loopback ({acceptance} acceptance): 1 uvicorn worker, private Tansu broker, "
        f"{args.devices} devices, {os.cpu_count()} cores shared with the load generator"
    )
    print(_table(results))
    gain = batched["samples_per_s"] / max(baseline["samples_per_s"], 1e-9)
    target = batched["samples_per_s"] >= 500_000 and batched["p99_ms"] < 250
    print(
        f"target >= 500,000 samples/s with p99 < 250 ms: {'met' if target else 'NOT met'}; "
        f"batching gain over one sample per request: x{gain:,.0f}"
    )
    print(
        orjson.dumps(
            {
                "samples_per_s": round(batched["samples_per_s"]),
                "p50_ms": round(batched["p50_ms"], 2),
                "p99_ms": round(batched["p99_ms"], 2),
                "baseline_samples_per_s": round(baseline["samples_per_s"], 1),
                "acceptance": acceptance,
            }
        ).decode()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
