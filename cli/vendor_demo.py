"""The main job's vendor-cloud patients: patients of the demo clinic whose steps live in a
vendor's cloud (the local fake of it), connected through the real OAuth flow of a real gateway,
backfilled, then kept current by a signed webhook; the worker stores the intervals, and the
totals stored are checked against what the vendor holds. Vendors: Polar AccessLink."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import psycopg
from pydantic import SecretStr

from device_adapters.cloud.fakes.polar import PolarFake
from device_adapters.cloud.fakes.server import ServedApp, serve
from device_adapters.cloud.polar import PolarClient
from device_adapters.cloud.settings import VendorSettings
from ingest.settings import GatewaySettings
from ingest.tokens import CLINIC_PREFIX, hash_secret, new_token
from rtm.settings import Settings
from simulation.cohort import CLINIC_ID

MODEL = "polar-accesslink-cloud"
ZONES = ("America/Chicago", "Europe/Helsinki")  # one patient west, one east of UTC


@dataclass(frozen=True)
class VendorPatient:
    vendor: str
    patient_id: str
    user: int | str
    tz: str
    vendor_steps: int
    stored_steps: int
    days: int
    status: str


def _minute_steps(seed: int, user: int, d: date) -> list[tuple[str, int]]:
    """A day of minute step counts: walks of a few minutes between 07:00 and 21:00, zeros around.
    Drawn from (seed, user, date) alone, so every run tells the same story about the same day."""
    rng = np.random.default_rng([seed, user, d.toordinal()])
    steps = np.zeros(24 * 60, dtype=np.int64)
    for start in rng.integers(7 * 60, 21 * 60, size=int(rng.integers(3, 9))):
        n = int(rng.integers(3, 25))
        steps[start:start + n] = rng.integers(60, 115, size=len(steps[start:start + n]))
    return [(f"{d.isoformat()}T{m // 60:02d}:{m % 60:02d}", int(s)) for m, s in enumerate(steps)]


def seed_clinic(settings: Settings, rows: list[tuple[str, str, str, str]], since: date) -> str:
    """Patients, episodes and their device models in the demo clinic (rows: patient, episode, model,
    vendor); a new clinic API key (returned). Idempotent: a rerun reuses what an earlier run made."""
    pepper = GatewaySettings().pepper_bytes(settings.secrets_dir)
    key_id, secret, token = new_token(CLINIC_PREFIX)
    with psycopg.connect(settings.dsn("owner"), autocommit=True) as conn:
        conn.execute("insert into clinics (clinic_id, name) values (%s, 'Demo Physical Therapy') "
                     "on conflict do nothing", (CLINIC_ID,))
        for patient_id, episode_id, model, vendor in rows:
            conn.execute("insert into device_models (model_id, vendor, name) values (%s, %s, %s) "
                         "on conflict do nothing", (model, vendor, f"{vendor.title()} (vendor cloud)"))
            conn.execute("insert into patients (patient_id, clinic_id) values (%s, %s) on conflict do nothing",
                         (patient_id, CLINIC_ID))
            conn.execute("insert into episodes (episode_id, patient_id, clinic_id, discipline, start_date) "
                         "values (%s, %s, %s, 'PT', %s) on conflict do nothing",
                         (episode_id, patient_id, CLINIC_ID, since))
        conn.execute("insert into ingest_clinic_keys (key_id, clinic_id, secret_hash) values (%s, %s, %s)",
                     (key_id, CLINIC_ID, hash_secret(pepper, secret)))
    return token


def enrol_credential(http: httpx.Client, settings: Settings, clinic: str, patient: str, episode: str,
                     device: str, model: str, since: datetime) -> str:
    """The device's credential, enrolled through the gateway's clinic API (or by an earlier run)."""
    r = http.post("/v1/enrolments", headers={"Authorization": f"Bearer {clinic}"}, json={
        "patient_id": patient, "episode_id": episode, "device_id": device, "model_id": model,
        "body_site": "wrist_left", "valid_from": since.isoformat()})
    if r.status_code == 201:
        return str(r.json()["credential_id"])
    with psycopg.connect(settings.dsn("writer")) as conn:  # enrolled by an earlier run
        row = conn.execute("select credential_id from ingest_device_credentials where device_id = %s "
                           "and revoked_at is null", (device,)).fetchone()
    if row is None:
        raise RuntimeError(f"enrolling {device} failed: {r.status_code} {r.text}")
    return str(row[0])


def _stored(settings: Settings, patient: str, since: datetime) -> int:
    with psycopg.connect(settings.dsn("reader")) as conn:
        row = conn.execute("select coalesce(sum(steps), 0) from activity_intervals where patient_id = %s "
                           "and source = 'vendor_cloud' and not deleted and time >= %s", (patient, since)).fetchone()
    return int(row[0]) if row else 0


def wait_stored(settings: Settings, patient: str, since: datetime, total: int, stall_s: float) -> int:
    """The vendor steps stored for the patient once they reach `total`, or once nothing more has
    arrived for `stall_s` (a busy machine takes longer for four weeks of minutes; a stuck sync
    makes no progress at all)."""
    stored, last_change = _stored(settings, patient, since), time.monotonic()
    while stored != total and time.monotonic() - last_change < stall_s:
        time.sleep(0.5)
        now = _stored(settings, patient, since)
        if now != stored:
            stored, last_change = now, time.monotonic()
    return stored


def demo_ids(vendor: str, seed: int, since: datetime, k: int | None = None) -> tuple[str, str]:
    """Patient and episode of a demo vendor patient. The first day is part of them: a run on another
    day (or with another --days) enrols anew from its own first day, while a rerun on the same day
    replays onto the same patient and stores nothing new."""
    patient = f"{vendor}-{seed}s{since:%y%m%d}" + ("" if k is None else f"-{k}")
    return patient, f"{patient}-ep"


def demo_gateway(settings: Settings, days: int, gateway: GatewaySettings | None = None,
                 **vendor: Any) -> ServedApp:
    """A vendor demo's gateway on a free local port: the vendors' settings given, and the demo's
    sync settings (quick polls, a backfill of the demo's days, a per-user budget no demo spends)."""
    from ingest.app import create_app  # the gateway, only when the demo runs
    from rtm.stack.broker import free_port

    port = free_port()
    vcfg = VendorSettings(redirect_base=f"http://127.0.0.1:{port}", syncer_poll_s=0.2, backfill_days=days,
                          user_rate_per_s=50.0, user_burst=100, **vendor)
    return serve(create_app(settings, gateway or GatewaySettings(), vendor_config=vcfg), port=port, lifespan=True)


def run_vendor_patients(settings: Settings, days: int, seed: int, timeout_s: float = 60.0) -> list[VendorPatient]:
    days = max(1, min(days, 28))
    fake = PolarFake(webhook_secret=f"demo-webhook-{seed}".encode())
    served = [serve(fake.app())]
    fake.base_url = served[0].url
    try:
        gateway = demo_gateway(
            settings, days,
            GatewaySettings(polar_webhook_secret=SecretStr((fake.webhook_secret or b"").decode()),
                            polar_api_base=fake.base_url),
            polar_client_id=fake.client_id, polar_client_secret=SecretStr(fake.client_secret),
            polar_authorize_url=f"{fake.base_url}/oauth2/authorization",
            polar_token_url=f"{fake.base_url}/v2/oauth2/token",
        )
        served.append(gateway)
        return _run(settings, fake, gateway.url, days, seed, timeout_s)
    finally:
        for s in reversed(served):
            s.stop()


def _run(settings: Settings, fake: PolarFake, gw_url: str, days: int, seed: int,
         timeout_s: float) -> list[VendorPatient]:
    since = datetime.now(UTC) - timedelta(days=days)
    patients = [demo_ids("polar", seed, since, k) for k in range(len(ZONES))]
    clinic = seed_clinic(settings, [(p, e, MODEL, "polar") for p, e in patients], since.date() - timedelta(days=1))
    fake.deliver = lambda url, body, headers: httpx.post(
        f"{gw_url}/v1/webhooks/polar", content=body, headers=headers, timeout=10).status_code
    out_users: list[tuple[str, int, str, int, int]] = []
    windows: dict[str, datetime] = {}  # what the vendor holds starts here (earlier runs may hold more)
    with httpx.Client(base_url=gw_url, timeout=30) as http:
        for k, ((patient, episode), tz) in enumerate(zip(patients, ZONES, strict=True)):
            user = 70_000 + seed * 10 + k
            today = datetime.now(ZoneInfo(tz)).date()
            # The first whole local day after the device was handed over (earlier data is refused).
            start = since.astimezone(ZoneInfo(tz)).date() + timedelta(days=1)
            total = 0
            for n in range((today - start).days):  # complete days; today arrives by webhook below
                d = start + timedelta(days=n)
                slots = _minute_steps(seed, user, d)
                fake.add_day(user, d.isoformat(), slots)
                total += sum(s for _, s in slots)
            cred = enrol_credential(http, settings, clinic, patient, episode, f"{patient}-polar", MODEL, since)
            r = http.post("/v1/vendor-connections/polar/authorize", headers={"Authorization": f"Bearer {clinic}"},
                          json={"credential_id": cred, "tz": tz})
            r.raise_for_status()
            back = httpx.URL(fake.consent(r.json()["authorization_url"], user))
            http.get(f"/v1/oauth/polar/callback?{back.query.decode()}").raise_for_status()
            out_users.append((patient, user, tz, total, (today - start).days + 1))
            windows[patient] = datetime.combine(start, datetime.min.time(), ZoneInfo(tz))
        # The webhook: AccessLink PINGs the gateway, then pushes today's activity as it syncs.
        async def hook() -> None:
            async with httpx.AsyncClient() as h:
                await PolarClient(h, fake.base_url, 10.0, fake.client_id, fake.client_secret).ensure_webhook(
                    f"{gw_url}/v1/webhooks/polar", ["ACTIVITY_SUMMARY"])

        asyncio.run(hook())
        for i, (patient, user, tz, total, n) in enumerate(out_users):
            today = datetime.now(ZoneInfo(tz)).date()
            now_min = datetime.now(ZoneInfo(tz)).hour * 60 + datetime.now(ZoneInfo(tz)).minute
            slots = _minute_steps(seed, user, today)[: max(now_min - 1, 1)]
            slots[-1] = (slots[-1][0], 0)  # a closing zero: the last reported value is not a repeat
            fake.add_day(user, today.isoformat(), slots)
            status = fake.push_activity(user, today.isoformat())
            if status != 200:
                raise RuntimeError(f"the gateway answered the webhook with {status}")
            out_users[i] = (patient, user, tz, total + sum(s for _, s in slots), n)
        results: list[VendorPatient] = []
        for patient, user, tz, total, n in out_users:
            stored = wait_stored(settings, patient, windows[patient], total, timeout_s)
            health = http.get(f"/v1/vendor-connections?patient_id={patient}",
                              headers={"Authorization": f"Bearer {clinic}"}).json()["connections"]
            results.append(VendorPatient("polar", patient, user, tz, total, stored, n,
                                         health[0]["status"] if health else "missing"))
    return results


def print_vendor_patients(rows: list[VendorPatient]) -> bool:
    print("\nvendor-cloud patients (connected by OAuth through the gateway, backfilled, then a verified webhook):")
    print(f"  {'vendor':13} {'patient':24} {'zone':19} {'days':>4} {'steps at vendor':>16} {'stored':>8} status")
    for r in rows:
        print(f"  {r.vendor:13} {r.patient_id:24} {r.tz:19} {r.days:>4} {r.vendor_steps:>16,} {r.stored_steps:>8,} "
              f"{r.status}{'' if r.stored_steps == r.vendor_steps else '  MISMATCH'}")
    return all(r.stored_steps == r.vendor_steps for r in rows)
