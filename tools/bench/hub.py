"""`rtm bench hub`: N virtual Movesense devices (bumble GATT servers on an in-process link) stream
IMU6 at their native rate through one hub agent (bleak sessions over the bumble backend, clock
mapping, batching, the SQLite spool) into the real gateway (uvicorn, scratch database, private
broker). Phase 1, live: uploads run while the devices stream; the spool depth is sampled every
second (backlog growth). Phase 2, offline: uploads stop while the devices keep streaming. Then
`rtm hub upload` drains the backlog, is SIGKILLed mid-upload and restarted. Finally the raw IMU
topic is read whole: `lost` = spooled event ids missing downstream, `duplicated` = messages beyond
one per id; `samples_per_s` = samples that reached the topic per second of streaming. Needs the
development dependency `bumble`. Ends with one JSON line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg import sql

from device_adapters.hub.agent import HubAgent
from device_adapters.hub.config import HubConfig
from ingest.tokens import DEVICE_PREFIX, hash_secret, new_token
from rtm.contract import Event, ImuBatch, decode
from rtm.db import connect
from rtm.db.migrate import migrate
from rtm.settings import Settings, get_settings
from rtm.stack import postgres
from rtm.stack.broker import PrivateBroker, free_port
from rtm.topics import RAW_IMU
from tools.bench.ingest import wait_gateway_ready

PEPPER = "bench-hub-pepper"
SAMPLES_PER_NOTIFICATION = 4


def _enrol(settings: Settings, count: int) -> list[tuple[str, str, str]]:
    run = uuid.uuid4().hex[:6]
    devices = []
    with connect("owner", settings, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("insert into clinics values ('bench-clinic', 'Benchmark clinic') on conflict do nothing")
        cur.execute("insert into device_models (model_id, vendor, name) values ('bench-ble', 'movesense', "
                    "'Movesense (virtual)') on conflict do nothing")
        for i in range(count):
            cred, secret, token = new_token(DEVICE_PREFIX)
            dev, pat, ep = f"hub-dev-{run}-{i}", f"hub-pat-{run}-{i}", f"hub-ep-{run}-{i}"
            cur.execute("insert into patients (patient_id, clinic_id) values (%s, 'bench-clinic')", (pat,))
            cur.execute("insert into episodes (episode_id, patient_id, clinic_id, discipline, start_date) "
                        "values (%s, %s, 'bench-clinic', 'PT', current_date - 30)", (ep, pat))
            cur.execute("insert into devices (device_id, model_id) values (%s, 'bench-ble')", (dev,))
            cur.execute("insert into ingest_device_credentials (credential_id, device_id, patient_id, episode_id, "
                        "clinic_id, valid_from, secret_hash) values (%s, %s, %s, %s, 'bench-clinic', %s, %s)",
                        (cred, dev, pat, ep, datetime.now(UTC) - timedelta(days=1),
                         hash_secret(PEPPER.encode(), secret)))
            devices.append((dev, pat, token))
    return devices


class _Recording(HubAgent):
    """The agent, remembering every event it spooled (id -> samples): the benchmark's ground truth."""

    spooled: dict[str, int]

    def spool_events(self, device_id: str, events: list[Event]) -> None:
        super().spool_events(device_id, events)
        for e in events:
            self.spooled[str(e.id)] = e.n_samples if isinstance(e, ImuBatch) else 0


async def _stream(args: argparse.Namespace, config: HubConfig) -> dict[str, Any]:
    from device_adapters.ble.testing import peripherals
    from device_adapters.ble.testing.virtual import Air, BumbleClient, BumbleScanner

    air = Air()
    devs = [peripherals.Movesense(air, f"Movesense {i}") for i in range(args.devices)]
    for d in devs:
        await d.start()
    config = config.model_copy(update={"devices": [
        c.model_copy(update={"address": d.address}) for c, d in zip(config.devices, devs, strict=True)]})
    agent = _Recording(config, scanner_backend=BumbleScanner, client_backend=BumbleClient,
                       backend_kwargs={"air": air})
    agent.spooled = {}
    stop_sessions, stop_uploads = asyncio.Event(), asyncio.Event()
    sessions = [asyncio.ensure_future(s.run(stop_sessions)) for s in agent.sessions]
    uploads = asyncio.ensure_future(agent.uploader.run(stop_uploads, idle_s=0.2))
    async with asyncio.timeout(60):
        while not all(d.subscriptions for d in devs):
            await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    streaming = True
    sent = [0] * len(devs)
    period = SAMPLES_PER_NOTIFICATION / args.rate

    async def device(i: int) -> None:
        rng = np.random.default_rng(i)
        start = loop.time()
        k = 0
        while streaming:
            await asyncio.sleep(max(0.0, start + k * period - loop.time()))
            acc = (rng.normal(0, 0.5, (SAMPLES_PER_NOTIFICATION, 3)) + np.array([0, 0, 9.81])).astype(np.float32)
            gyr = rng.normal(0, 5, (SAMPLES_PER_NOTIFICATION, 3)).astype(np.float32)
            await devs[i].stream_imu6(10_000 + round(k * period * 1000), acc, gyr)
            sent[i] += SAMPLES_PER_NOTIFICATION
            k += 1

    t0 = time.monotonic()
    feeders = [asyncio.ensure_future(device(i)) for i in range(len(devs))]
    depths = []
    while time.monotonic() - t0 < args.duration:
        await asyncio.sleep(1.0)
        depths.append(agent.spool.depth())
    live_s = time.monotonic() - t0
    sent_live = sum(sent)
    left_live = {s.event_id for s in agent.spool.peek(1 << 30)}
    uploaded_live = sum(n for e, n in agent.spooled.items() if e not in left_live)
    stop_uploads.set()
    await uploads
    await asyncio.sleep(args.offline)  # the network is down; the devices keep streaming
    streaming = False
    stream_s = time.monotonic() - t0
    await asyncio.gather(*feeders)
    await asyncio.sleep(0.3)
    stop_sessions.set()
    await asyncio.gather(*sessions)
    agent.flush()
    result = {
        "live_s": live_s, "stream_s": stream_s, "sent_live": sent_live, "uploaded_live_samples": uploaded_live,
        "depths": depths, "sent": sum(sent), "spooled": dict(agent.spooled),
        "bad_frames": sum(s.decoder.stats.bad_total for s in agent.sessions),
        "reconnects": sum(max(0, s.stats.connects - 1) for s in agent.sessions),
        "backlog": agent.spool.depth(),
    }
    await agent.close()
    return result


def _read_topic(bootstrap: str) -> list[bytes]:
    async def run() -> list[bytes]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        try:
            parts = [TopicPartition(RAW_IMU.name, p) for p in range(RAW_IMU.partitions)]  # created up front
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            out: list[bytes] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    out.extend(r.value for r in records if r.value is not None)
                done = True
                for tp in parts:
                    high = consumer.highwater(tp)
                    if high is None or await consumer.position(tp) < high:
                        done = False
                if done and not batch:
                    break
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())


def _depth(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("select count(*) from events").fetchone()[0])


def _upload_cmd(config: Path) -> list[str]:
    return [sys.executable, "-c", "from cli.main import main; raise SystemExit(main())", "hub", "upload",
            "--config", str(config)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rtm bench hub", description=__doc__)
    p.add_argument("--devices", type=int, default=20)
    p.add_argument("--rate", type=float, default=52.0, help="IMU6 rate per device, Hz (Movesense native: 52)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of live streaming with uploads")
    p.add_argument("--offline", type=float, default=5.0, help="seconds streaming with the network down")
    p.add_argument("--batch-s", type=float, default=2.0, help="IMU batch length (the hub's batch_s)")
    args = p.parse_args(argv)

    base = get_settings()
    postgres.up(base)
    db_name = f"rtm_bench_{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(update={"pg_database": db_name})
    postgres.ensure_database(settings)
    gateway: subprocess.Popen[bytes] | None = None
    tmp = Path(tempfile.mkdtemp(prefix="rtm-hub-bench-"))
    try:
        migrate(settings)
        devices = _enrol(settings, args.devices)
        with PrivateBroker(settings) as broker:
            port = free_port()
            env = {**os.environ, "RTM_PG_DATABASE": db_name, "RTM_KAFKA_BOOTSTRAP": broker.settings.kafka_bootstrap,
                   "RTM_GATEWAY_PEPPER": PEPPER, "RTM_GATEWAY_LOG_LEVEL": "warning"}
            gateway = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "ingest.app:app_factory", "--host", "127.0.0.1",
                 "--port", str(port), "--no-access-log", "--log-level", "warning"],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            wait_gateway_ready(port, gateway)
            cfg = {
                "gateway_url": f"http://127.0.0.1:{port}", "spool_path": str(tmp / "spool.db"),
                "batch_s": args.batch_s, "upload_batch_events": 20, "reconnect_initial_s": 0.1,
                "reconnect_max_s": 1.0, "scan_timeout_s": 10.0,
                "devices": [{"device_id": d, "patient_id": pat, "profile": "movesense-imu6",
                             "profile_options": {"rate_hz": int(args.rate)}, "name": f"Movesense {i}",
                             "body_site": "thigh_left", "token": tok} for i, (d, pat, tok) in enumerate(devices)],
            }
            config_path = tmp / "hub.json"
            config_path.write_text(json.dumps(cfg))
            live = asyncio.run(_stream(args, HubConfig.model_validate(cfg)))

            # the backlog drained by a hub process that is killed mid-upload, then restarted
            backlog = _depth(tmp / "spool.db")
            cfg["upload_batch_events"] = 1
            config_path.write_text(json.dumps(cfg))
            proc = subprocess.Popen(_upload_cmd(config_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 120
            while _depth(tmp / "spool.db") == backlog and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            killed_with = _depth(tmp / "spool.db")
            cfg["upload_batch_events"] = 50
            config_path.write_text(json.dumps(cfg))
            rc = subprocess.run(_upload_cmd(config_path), capture_output=True, timeout=600).returncode
            left = _depth(tmp / "spool.db")

            values = _read_topic(broker.settings.kafka_bootstrap)
    finally:
        if gateway is not None and gateway.poll() is None:
            gateway.terminate()
            gateway.wait(15)
        with postgres.admin_connect(base) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(db_name)))

    events = [decode(v) for v in values]
    ids = [str(e.id) for e in events]
    unique = {str(e.id): e.n_samples for e in events if isinstance(e, ImuBatch)}
    downstream_samples = sum(unique.values())
    expected = set(live["spooled"])
    lost = len(expected - set(ids))
    duplicated = len(ids) - len(set(ids))
    samples_per_s = downstream_samples / live["stream_s"]
    live_per_s = live["uploaded_live_samples"] / live["live_s"]
    depths = live["depths"]
    half = len(depths) // 2
    growth = (float(np.mean(depths[half:])) - float(np.mean(depths[:half]))) if half else 0.0
    print(f"{'devices':<34}{args.devices:>12}")
    print(f"{'rate per device, Hz':<34}{args.rate:>12.0f}")
    print(f"{'offered samples/s (all devices)':<34}{args.devices * args.rate:>12,.0f}")
    print(f"{'samples/s device -> topic':<34}{samples_per_s:>12,.0f}")
    print(f"{'samples/s uploaded while live':<34}{live_per_s:>12,.0f}  (the last batch_s waits in memory)")
    print(f"{'samples sent over BLE / downstream':<34}{live['sent']:>12,} / {downstream_samples:,}")
    print(f"{'spool depth, live (per second)':<34}  {depths}")
    print(f"{'backlog growth (2nd - 1st half)':<34}{growth:>12.1f} events")
    print(f"{'backlog after offline phase':<34}{backlog:>12} events")
    print(f"{'killed with events left':<34}{killed_with:>12}")
    print(f"{'left after restart (exit code)':<34}{left:>12} ({rc})")
    print(f"{'events spooled / downstream':<34}{len(expected):>12} / {len(ids)}")
    print(f"{'bad frames, reconnects':<34}{live['bad_frames']:>12}, {live['reconnects']}")
    print(json.dumps({
        "devices": args.devices, "rate_hz": args.rate, "samples_per_s": round(samples_per_s, 1),
        "offered_samples_per_s": args.devices * args.rate, "backlog_growth_events": round(growth, 1),
        "killed_with_events_left": killed_with, "events": len(expected),
        "samples_sent": live["sent"], "samples_downstream": downstream_samples, "lost": lost, "duplicated": duplicated,
    }))
    return 0 if lost == 0 and duplicated == 0 and left == 0 and downstream_samples == live["sent"] else 1
