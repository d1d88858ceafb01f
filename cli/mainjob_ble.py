"""`rtm run --via-ble N`: N of the cohort's exercise sessions (the first session of one patient after
another) travel the home-hub path instead of going straight to the broker.

Each chosen patient gets a second device, `<device>-ble`, enrolled through the gateway's clinic
route. A virtual Movesense (bumble peripheral, see `device_adapters/ble/testing`) replays the
session's motion as IMU6 notifications at the sensor's native 52 Hz (the 50 Hz simulated samples
resampled linearly: a 52 Hz device samples the same motion), with a device clock in milliseconds
that starts afresh for every session (a new clock epoch, as after a power cycle). The hub agent
(bleak over the bumble backend, clock mapping, batching, the SQLite spool, the uploader) uploads
them to the real gateway. The hub's host clock is the session's own time, so batches carry the
session's historical instants, and a replay produces the same event ids (a second run is
recognised as duplicates). Session markers, step counts and the other sessions still go straight
to the broker. The session's start and end markers go with it, under the BLE device (the pipeline
matches a recording to the session of the same device), spooled and uploaded by the hub.
Needs the development dependency `bumble`.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import psycopg

from rtm.contract import Event, ImuBatch, SessionMarker
from rtm.settings import Settings

RATE_HZ = 52  # Movesense IMU6's native rate nearest to the cohort's 50 Hz
SAMPLES_PER_NOTIFICATION = 8  # 6 + 8 * 24 = 198 bytes: one notification at the usual MTU of 247


@dataclass
class Session:
    patient_id: str
    episode_id: str | None
    device_id: str
    body_site: str
    batches: list[ImuBatch] = field(default_factory=list)
    markers: list[SessionMarker] = field(default_factory=list)


@dataclass
class BleRoute:
    """Chooses the sessions that go over BLE while the cohort is produced (`take`), then replays them."""

    limit: int
    sessions: dict[tuple[str, str], Session] = field(default_factory=dict)
    patients: set[str] = field(default_factory=set)

    def take(self, event: Event) -> bool:
        """True: the event is this route's (not to be produced to the broker). A session is chosen at
        its start marker; its batches carry the session id as their stream id."""
        if isinstance(event, SessionMarker):
            key = (event.provenance.device_id, event.session_id)
            if (event.phase == "start" and key not in self.sessions and len(self.sessions) < self.limit
                    and event.patient_id not in self.patients):
                self.sessions[key] = Session(event.patient_id, event.episode_id, event.provenance.device_id,
                                             event.body_site.value)
                self.patients.add(event.patient_id)
            session = self.sessions.get(key)
            if session is not None:
                session.markers.append(event)
            return session is not None
        if isinstance(event, ImuBatch):
            session = self.sessions.get((event.provenance.device_id, event.stream_id))
            if session is not None:
                session.batches.append(event)
            return session is not None
        return False


def session_samples(batches: list[ImuBatch]) -> tuple[float, npt.NDArray[np.float64], npt.NDArray[np.float32],
                                                        npt.NDArray[np.float32]]:
    """The session resampled at RATE_HZ: (UTC start in s, times since it, acc m/s^2, gyr deg/s)."""
    t0 = batches[0].t0.timestamp()
    t = np.concatenate([b.t0.timestamp() - t0 + b.times_s() for b in batches])
    acc = np.concatenate([b.acc_si() for b in batches]).astype(np.float64)
    gyr = np.rad2deg(np.concatenate([b.gyr_si() for b in batches]).astype(np.float64))
    tr = np.arange(0.0, t[-1], 1.0 / RATE_HZ)
    resample = np.column_stack([np.interp(tr, t, c) for c in (*acc.T, *gyr.T)]).astype(np.float32)
    return t0, tr, resample[:, :3], resample[:, 3:]


def _on_device(marker: SessionMarker, device_id: str) -> SessionMarker:
    doc = marker.model_dump(exclude={"event_id"})
    doc["provenance"]["device_id"] = device_id
    return SessionMarker.model_validate(doc)


@dataclass
class ReplayResult:
    sessions: int
    samples: int
    imu_batches: int  # IMU batches the gateway took (accepted or already known)
    events: int  # every event the gateway took, the session markers included
    duplicates: int
    left_in_spool: int
    bad_frames: int
    devices: list[str]


def _clinic_token(settings: Settings, pepper: bytes, clinic_id: str) -> str:
    from ingest.tokens import CLINIC_PREFIX, hash_secret, new_token

    key_id, secret, token = new_token(CLINIC_PREFIX)
    with psycopg.connect(settings.dsn("owner"), autocommit=True) as conn:
        conn.execute("insert into ingest_clinic_keys (key_id, clinic_id, secret_hash, label) values (%s, %s, %s, %s)",
                     (key_id, clinic_id, hash_secret(pepper, secret), "rtm run --via-ble"))
    return token


def _enrol(url: str, clinic_token: str, model_id: str, s: Session, valid_from: str) -> str:
    device_id = f"{s.device_id}-ble"
    auth = {"Authorization": f"Bearer {clinic_token}"}
    r = httpx.post(f"{url}/v1/enrolments", headers=auth, json={
        "patient_id": s.patient_id, "episode_id": s.episode_id, "device_id": device_id, "model_id": model_id,
        "body_site": s.body_site, "valid_from": valid_from})
    if r.status_code == 409:  # an earlier run enrolled it: revoke and enrol again (a fresh token)
        r = httpx.delete(f"{url}/v1/enrolments/{r.json()['credential_id']}", headers=auth)
        r.raise_for_status()
        return _enrol(url, clinic_token, model_id, s, valid_from)
    r.raise_for_status()
    return str(r.json()["token"])


async def replay(route: BleRoute, url: str, clinic_token: str, model_id: str, spool_dir: Path) -> ReplayResult:
    """Stream the route's sessions from virtual Movesense devices through one hub agent into the gateway."""
    from device_adapters.ble.profiles import movesense
    from device_adapters.ble.testing import peripherals
    from device_adapters.ble.testing.virtual import Air, BumbleClient, BumbleScanner
    from device_adapters.hub.agent import HubAgent
    from device_adapters.hub.config import HubConfig

    sessions = [s for s in route.sessions.values() if s.batches]
    first = min(s.batches[0].t0 for s in sessions) - timedelta(days=1)
    by_device: dict[str, list[Session]] = {}
    for s in sessions:
        by_device.setdefault(s.device_id, []).append(s)
    air = Air()
    devices: list[dict[str, Any]] = []
    periphs: dict[str, Any] = {}
    for device_id, group in by_device.items():
        token = await asyncio.to_thread(_enrol, url, clinic_token, model_id, group[0], first.isoformat())
        p = peripherals.Movesense(air, f"Movesense {device_id}")
        await p.start()
        periphs[f"{device_id}-ble"] = p
        devices.append({"device_id": f"{device_id}-ble", "patient_id": group[0].patient_id,
                        "episode_id": group[0].episode_id, "profile": "movesense-imu6",
                        "profile_options": {"rate_hz": RATE_HZ}, "address": p.address,
                        "body_site": group[0].body_site, "token": token})
    config = HubConfig.model_validate({"gateway_url": url, "spool_path": str(spool_dir / "spool.db"),
                                       "health_report_s": 0, "scan_timeout_s": 5.0, "devices": devices})
    now = [time.time()]
    agent = HubAgent(config, scanner_backend=BumbleScanner, client_backend=BumbleClient,
                     backend_kwargs={"air": air}, clock=lambda: now[0])
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(s.run(stop)) for s in agent.sessions]
    samples = 0
    try:
        async with asyncio.timeout(30):
            while not all(p.subscriptions for p in periphs.values()):
                await asyncio.sleep(0.01)
        ble = {s.device_id: s for s in agent.sessions}
        for s in sessions:
            dev_id = f"{s.device_id}-ble"
            periph, link = periphs[dev_id], ble[dev_id]
            t0, t, acc, gyr = session_samples(s.batches)
            markers = [_on_device(m, dev_id) for m in s.markers]
            agent.spool_events(dev_id, [m for m in markers if m.phase == "start"])
            base_ms = 10_000  # the device clock starts afresh for each session (a power cycle)
            for a in range(0, len(t), SAMPLES_PER_NOTIFICATION):
                b = min(a + SAMPLES_PER_NOTIFICATION, len(t))
                t_ms = base_ms + round(t[a] * 1000)
                # The hub's clock is the session's own time; a packet arrives once its last sample is taken.
                now[0] = t0 + (t_ms - base_ms) / 1000 + (b - 1 - a) / RATE_HZ
                expected = link.stats.notifications + 1
                await periph.notify(movesense.DATA, movesense.encode_imu6(99, t_ms, acc[a:b], gyr[a:b]))
                async with asyncio.timeout(10):  # one at a time: each arrives at its own instant
                    while link.stats.notifications < expected:
                        await asyncio.sleep(0)
            samples += len(t)
            agent.spool_events(dev_id, [m for m in markers if m.phase == "end"])
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        agent.flush()
    try:
        await agent.uploader.drain()
        taken = agent.uploader.stats.accepted + agent.uploader.stats.duplicates
        return ReplayResult(len(sessions), samples, taken - sum(len(s.markers) for s in sessions), taken,
                            agent.uploader.stats.duplicates, agent.spool.depth(),
                            sum(s.decoder.stats.bad_total for s in agent.sessions), list(periphs))
    finally:
        await agent.close()


@contextmanager
def gateway(settings: Settings) -> Iterator[tuple[str, bytes]]:
    """The ingest gateway in this process (uvicorn on a free port): its URL and pepper."""
    import uvicorn

    from ingest.app import create_app
    from ingest.settings import get_gateway_settings
    from rtm.stack.broker import free_port

    cfg = get_gateway_settings()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, cfg), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", cfg.pepper_bytes(settings.secrets_dir)
    finally:
        server.should_exit = True
        thread.join(15)


def run_route(route: BleRoute, settings: Settings, clinic_id: str, model_id: str) -> ReplayResult:
    """Start a gateway, replay the route's sessions through it, stop it."""
    with gateway(settings) as (url, pepper), tempfile.TemporaryDirectory(prefix="rtm-hub-") as tmp:
        token = _clinic_token(settings, pepper, clinic_id)
        return asyncio.run(replay(route, url, token, model_id, Path(tmp)))


def via_ble_report(r: ReplayResult) -> int:
    """Print what went over BLE; returns the IMU batches the gateway took (the pipeline must store them)."""
    print(f"via BLE: {r.sessions} sessions, {r.samples} samples at {RATE_HZ} Hz from {len(r.devices)} virtual "
          f"Movesense devices through the hub agent: {r.imu_batches} IMU batches and {r.events - r.imu_batches} "
          f"session markers uploaded ({r.duplicates} already known), {r.left_in_spool} left in the spool, "
          f"{r.bad_frames} bad frames")
    if r.left_in_spool:
        raise RuntimeError(f"{r.left_in_spool} events could not be uploaded over the BLE path")
    return r.imu_batches
