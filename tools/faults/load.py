"""The devices of a fault run and how they upload: the simulated cohort's events
(`simulation`), enrolled through the gateway with real credentials, sent as a hub
or phone sends them (JSON batches, binary IMU frames) and resent until acknowledged, with
exponential back-off that honours Retry-After. What the gateway acknowledged (2xx) is written to a
ledger: the only events the checks may expect in the database."""

from __future__ import annotations

import asyncio
import random
import time as clock
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

import aiohttp
import orjson

from ingest.acceptance import digest
from ingest.bodies import IMU_FRAME_MEDIA_TYPE
from rtm.contract import ActivityInterval, Event, ImuBatch, SessionMarker, encode
from simulation.cohort import CLINIC_ID, DEVICE_MODEL, Cohort, SimPatient, patient_events

# Kinds a device may upload to /v1/events (a time-zone change comes from the clinic, not here).
DEVICE_KINDS = ("imu_batch", "activity_interval", "session_marker")
STEP_HOURS_PER_UPLOAD = 4  # a phone syncs steps a few times a day
IMU_BATCHES_PER_UPLOAD = 3  # 30 s of recording per request while a session runs
RETRYABLE = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Item:
    """One event as a device sends it, and what the database should then hold for it."""

    event_id: uuid.UUID
    kind: str
    patient_id: str
    body: bytes  # the canonical encoding: a binary frame (IMU) or one JSON object
    digest: bytes  # of the body: what the gateway records as accepted, and the IMU archive keeps
    ref: tuple[str, str, datetime] | None = None  # a session marker's (session_id, phase, at)
    clean: Item | None = None  # what the device sends instead when the gateway refuses this one

    @classmethod
    def of(cls, event: Event) -> Item:
        body = encode(event)
        ref = (event.session_id, event.phase, event.at) if isinstance(event, SessionMarker) else None
        return cls(event.id, event.kind, event.patient_id, body, digest(body), ref)


@dataclass(frozen=True)
class Device:
    patient_id: str
    device_id: str
    token: str


@dataclass
class Upload:
    """One request; `copies` concurrent sends of it (a retry storm)."""

    device: Device
    items: list[Item]
    copies: int = 1

    @property
    def frames(self) -> bool:
        return all(i.kind == "imu_batch" for i in self.items)


@dataclass
class Ledger:
    """What the gateway acknowledged (the last acknowledged version of each event id), what it
    refused for good, and what was never acknowledged before the deadline."""

    acked: dict[uuid.UUID, Item] = field(default_factory=dict)
    refused: dict[uuid.UUID, str] = field(default_factory=dict)
    unacked: set[uuid.UUID] = field(default_factory=set)
    statuses: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    uploads_done: int = 0
    slowest_s: float = 0.0  # the longest a request waited for its answer (or for nothing)

    def merge(self, other: Ledger) -> None:
        self.acked.update(other.acked)
        self.refused.update(other.refused)
        self.unacked |= other.unacked
        self.statuses.update(other.statuses)


def cohort_items(cohort: Cohort, patients: Iterable[SimPatient]) -> dict[str, list[Item]]:
    """Each patient's device events, in the order the device produced them."""
    out: dict[str, list[Item]] = {}
    for p in patients:
        out[p.patient_id] = [Item.of(e) for e in patient_events(cohort, p) if e.kind in DEVICE_KINDS]
    return out


def uploads_for(device: Device, items: list[Item]) -> list[Upload]:
    """Group a device's events into requests as a phone would: a few hours of steps per request,
    session markers alone, IMU batches a few at a time while the session runs."""
    out: list[Upload] = []
    run: list[Item] = []

    def flush() -> None:
        if run:
            out.append(Upload(device, list(run)))
            run.clear()

    for item in items:
        if run and (run[0].kind != item.kind or item.kind == "session_marker"):
            flush()
        run.append(item)
        limit = IMU_BATCHES_PER_UPLOAD if item.kind == "imu_batch" else STEP_HOURS_PER_UPLOAD
        if item.kind == "session_marker" or len(run) >= limit:
            flush()
    flush()
    return out


def request_body(items: list[Item]) -> tuple[bytes, str]:
    if all(i.kind == "imu_batch" for i in items):
        return b"".join(i.body for i in items), IMU_FRAME_MEDIA_TYPE
    return b'{"events":[' + b",".join(_json_item(i) for i in items) + b"]}", "application/json"


def _json_item(item: Item) -> bytes:
    if item.kind != "imu_batch":
        return item.body
    from rtm.contract import decode

    body = decode(item.body).model_dump(mode="json")
    body["kind"] = item.kind
    return orjson.dumps(body)


# --- variants of events, for the faults ------------------------------------------------------------
def poisoned(item: Item) -> Item:
    """The same step interval with a NUL character in its firmware string, which PostgreSQL cannot
    store (text and jsonb refuse U+0000); refused, the device falls back to the clean version."""
    from rtm.contract import decode

    event = decode(item.body)
    assert isinstance(event, ActivityInterval)
    prov = event.provenance.model_copy(update={"firmware": "1.0\x00"})
    bad = Item.of(event.model_copy(update={"provenance": prov}))
    return replace(bad, clean=item)


def conflicting(item: Item) -> Item:
    """The same IMU batch id (same device, stream, first sample) with other samples."""
    from rtm.contract import decode

    event = decode(item.body)
    assert isinstance(event, ImuBatch)
    other = ImuBatch.model_validate(
        {**event.model_dump(exclude={"acc", "gyr", "t_offsets_us"}), "acc": event.acc + 0.5, "gyr": event.gyr,
         "t_offsets_us": event.t_offsets_us}
    )
    assert other.id == event.id
    return Item.of(other)


# --- enrolment ---------------------------------------------------------------------------------------
def enrolment_start(cohort: Cohort) -> datetime:
    """When the devices were handed over: the day before the cohort starts (as the seed has it)."""
    return datetime.combine(cohort.start, time(0), tzinfo=UTC) - timedelta(days=1)


async def enrol_devices(base_url: str, clinic_token: str, cohort: Cohort,
                        patients: Iterable[SimPatient]) -> dict[str, Device]:
    """Each patient's wearable enrolled through the gateway (POST /v1/enrolments)."""
    out: dict[str, Device] = {}
    valid_from = enrolment_start(cohort).isoformat()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for p in patients:
            body = {"patient_id": p.patient_id, "episode_id": p.episode_id, "device_id": p.device_id,
                    "model_id": DEVICE_MODEL, "body_site": p.body_site, "valid_from": valid_from}
            for attempt in range(20):
                async with http.post(f"{base_url}/v1/enrolments", json=body,
                                     headers={"Authorization": f"Bearer {clinic_token}"}) as resp:
                    if resp.status == 201:
                        out[p.patient_id] = Device(p.patient_id, p.device_id, (await resp.json())["token"])
                        break
                    if resp.status not in RETRYABLE or attempt == 19:
                        raise RuntimeError(f"enrolment of {p.device_id} failed: {resp.status} {await resp.text()}")
                await asyncio.sleep(0.5)
    return out


async def create_clinic_token(settings: Any) -> str:
    """A clinic API key for the simulated clinic, made as `rtm clinic-key create` makes one."""
    from ingest.enrolment import create_clinic_key
    from ingest.settings import GatewaySettings
    from ingest.store import Store

    store = await Store.open(settings, max_size=1, role="owner")  # credentials: the owner's to write
    try:
        key = await create_clinic_key(store, GatewaySettings().pepper_bytes(settings.secrets_dir), CLINIC_ID,
                                      "rtm faults")
    finally:
        await store.close()
    return key.token


# --- sending -----------------------------------------------------------------------------------------
@dataclass
class Client:
    """Devices uploading to one gateway; each device sends its requests one after another."""

    base_url: str
    ledger: Ledger
    rng: random.Random
    deadline: float  # loop time after which a device gives up (its rest stays unacknowledged)
    backoff_s: float = 0.2
    backoff_max_s: float = 5.0
    request_timeout_s: float = 30.0

    async def _post(self, http: aiohttp.ClientSession, up: Upload,
                    items: list[Item]) -> tuple[int | None, dict[str, Any], float | None]:
        body, media = request_body(items)
        headers = {"Authorization": f"Bearer {up.device.token}", "Content-Type": media}
        self.ledger.requests += 1
        sent = clock.monotonic()
        try:
            async with http.post(f"{self.base_url}/v1/events", data=body, headers=headers) as resp:
                raw = await resp.read()
                retry = resp.headers.get("Retry-After")
                try:
                    doc = orjson.loads(raw) if raw else {}
                except orjson.JSONDecodeError:
                    doc = {}
                return resp.status, doc if isinstance(doc, dict) else {}, float(retry) if retry else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None, {}, None
        finally:
            self.ledger.slowest_s = max(self.ledger.slowest_s, clock.monotonic() - sent)

    async def send(self, http: aiohttp.ClientSession, up: Upload) -> None:
        """Send until every item is acknowledged or refused for good, or the deadline passes."""
        loop = asyncio.get_running_loop()
        items = list(up.items)
        attempt = 0
        while items:
            status, doc, retry_after = await self._post(http, up, items)
            self.ledger.statuses[str(status) if status else "no answer"] += 1
            if status is not None and 200 <= status < 300:
                for r in doc.get("results", []):
                    item = items[int(r["index"])]
                    self.ledger.acked[item.event_id] = item
                    self.ledger.unacked.discard(item.event_id)
                return
            if status in (409, 422) and doc.get("errors"):
                bad = {int(e["index"]): str(e.get("code", status)) for e in doc["errors"] if "index" in e}
                if bad:  # drop or fix the items the gateway names, resend the rest at once
                    kept = []
                    for i, item in enumerate(items):
                        if i not in bad:
                            kept.append(item)
                        elif item.clean is not None:
                            kept.append(item.clean)
                        else:
                            self.ledger.refused[item.event_id] = bad[i]
                    items = kept
                    continue
            if status is not None and status not in RETRYABLE:
                for item in items:
                    self.ledger.refused[item.event_id] = f"{status} {doc.get('code', '')}".strip()
                return
            delay = min(self.backoff_max_s, self.backoff_s * 2**attempt) * (0.5 + self.rng.random())
            if retry_after is not None:
                delay = max(delay, retry_after)
            attempt += 1
            if loop.time() + delay > self.deadline:
                self.ledger.unacked.update(i.event_id for i in items if i.event_id not in self.ledger.acked)
                return
            await asyncio.sleep(delay)

    async def run(self, uploads: dict[Device, list[Upload]], pace_s: float,
                  on_progress: Callable[[int], None] | None = None) -> None:
        """Every device's uploads, devices in parallel, `pace_s` between one device's requests."""
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=self.request_timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

            async def device(ups: list[Upload]) -> None:
                for up in ups:
                    await asyncio.gather(*(self.send(http, up) for _ in range(up.copies)))
                    self.ledger.uploads_done += 1
                    if on_progress is not None:
                        on_progress(self.ledger.uploads_done)
                    await asyncio.sleep(pace_s)

            await asyncio.gather(*(device(ups) for ups in uploads.values()))
