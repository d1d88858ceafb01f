"""The hub end to end on the real stack: virtual BLE devices (bumble) -> BLE sessions -> assembly
-> spool -> the real gateway (uvicorn, real broker and database); the uploading hub process is
SIGKILLed mid-upload and restarted; downstream (the raw IMU topic) holds every batch exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from device_adapters.ble.testing import peripherals
from device_adapters.ble.testing.virtual import Air, BumbleClient, BumbleScanner
from device_adapters.hub.agent import HubAgent
from device_adapters.hub.config import HubConfig
from rtm.contract import ImuBatch, decode
from rtm.settings import Settings
from tests.ingest.conftest import make_care, read_topic

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def enrol(url: str, db_settings: Settings, n: int) -> tuple[str, list[tuple[str, str]]]:
    care = make_care(db_settings)
    out = []
    for i in range(n):
        device_id = f"ble-{os.urandom(4).hex()}-{i}"
        r = httpx.post(f"{url}/v1/enrolments", headers={"Authorization": f"Bearer {care.clinic_token}"}, json={
            "patient_id": care.patient_id, "episode_id": care.episode_id, "device_id": device_id,
            "model_id": care.model_id, "body_site": "thigh_left"})
        assert r.status_code == 201, r.text
        out.append((device_id, r.json()["token"]))
    return care.patient_id, out


def hub_config(tmp_path: Path, url: str, patient: str, devices: list[tuple[str, str]], addresses: list[str],
               batch_events: int) -> Path:
    cfg = {
        "gateway_url": url, "spool_path": str(tmp_path / "spool.db"), "batch_s": 0.15,
        "upload_batch_events": batch_events, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.2,
        "scan_timeout_s": 3.0,
        "devices": [{"device_id": d, "patient_id": patient, "profile": "movesense-imu6", "address": a,
                     "body_site": "thigh_left", "token": t} for (d, t), a in zip(devices, addresses, strict=True)],
    }
    path = tmp_path / "hub.json"
    path.write_text(json.dumps(cfg))
    return path


async def record_over_ble(config: HubConfig, n_devices: int, notifications: int) -> HubAgent:
    """Stream IMU6 notifications from virtual Movesense devices through the hub's BLE sessions into its spool."""
    air = Air()
    devs = [peripherals.Movesense(air, f"Movesense {i}") for i in range(n_devices)]
    for d in devs:
        await d.start()
    addresses = [d.address for d in devs]
    config = config.model_copy(update={"devices": [
        dev.model_copy(update={"address": a}) for dev, a in zip(config.devices, addresses, strict=True)]})
    agent = HubAgent(config, scanner_backend=BumbleScanner, client_backend=BumbleClient,
                     backend_kwargs={"air": air})
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(s.run(stop)) for s in agent.sessions]
    async with asyncio.timeout(20):
        while not all(d.subscriptions for d in devs):
            await asyncio.sleep(0.01)
    rng = np.random.default_rng(5)
    for k in range(notifications):
        for d in devs:
            acc = (rng.normal(0, 0.5, (4, 3)) + np.array([0, 0, 9.81])).astype(np.float32)
            await d.stream_imu6(10_000 + round(k * 4000 / 52), acc, rng.normal(0, 5, (4, 3)).astype(np.float32))
        await asyncio.sleep(4 / 52 / 8)  # a little faster than real time
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks)
    agent.flush()
    return agent


def spool_depth(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("select count(*) from events").fetchone()[0])


def hub_upload(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "from cli.main import main; raise SystemExit(main())",
                             "hub", "upload", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_hub_killed_mid_upload_loses_and_duplicates_nothing(
        tmp_path: Path, gateway_url: str, db_settings: Settings) -> None:
    patient, devices = enrol(gateway_url, db_settings, 2)
    path = hub_config(tmp_path, gateway_url, patient, devices, ["00:00:00:00:00:00"] * 2, batch_events=1)
    agent = asyncio.run(record_over_ble(HubConfig.load(path), 2, notifications=60))
    spooled = {s.event_id for s in agent.spool.peek(10_000)}
    first_bodies = [(s.event_id, s.device_id, s.kind, s.body) for s in agent.spool.peek(3)]
    bad = sum(s.decoder.stats.bad_total for s in agent.sessions)
    asyncio.run(agent.close())
    assert bad == 0 and len(spooled) >= 40, (bad, len(spooled))

    # first run: killed as soon as part of the spool is uploaded
    proc = hub_upload(path)
    deadline = time.monotonic() + 60
    while spool_depth(tmp_path / "spool.db") == len(spooled):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    left = spool_depth(tmp_path / "spool.db")
    assert 0 < left < len(spooled), "the kill did not land mid-upload"

    # restarted: drains what is left
    proc = hub_upload(path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert spool_depth(tmp_path / "spool.db") == 0

    # a crash after the gateway's answer but before the spool's delete leaves events to send again:
    # they come back as duplicates and are not published twice
    from device_adapters.hub.spool import Spool
    spool = Spool(tmp_path / "spool.db", 1 << 30)
    spool.put(first_bodies)
    spool.close()
    proc = hub_upload(path)
    out, err = proc.communicate(timeout=120)
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["duplicates"] == 3 and summary["accepted"] == 0, summary

    values = read_topic(db_settings, "rtm.raw.imu.v1", patient.encode(), timeout_s=20)
    ids = [str(decode(v).id) for v in values]
    batches = [decode(v) for v in values]
    assert all(isinstance(b, ImuBatch) for b in batches)
    assert len(ids) == len(spooled), f"{len(ids)} downstream for {len(spooled)} spooled"  # nothing duplicated
    assert set(ids) == spooled  # nothing lost
    n_samples = sum(b.n_samples for b in batches if isinstance(b, ImuBatch))
    assert n_samples == 2 * 60 * 4
