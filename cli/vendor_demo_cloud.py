"""The main job's Google Health and Oura patients: like the Polar ones (cli.vendor_demo), patients
of the demo clinic connected through the real OAuth flow of a real gateway to a local fake of
each vendor, backfilled, then kept current by a verified webhook; the stored step totals are
checked against what the vendor holds. Oura's today is delivered twice (a running total that
grows): the stored total is the last one, not the sum."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from pydantic import SecretStr

from cli.vendor_demo import (
    VendorPatient,
    _minute_steps,
    demo_gateway,
    demo_ids,
    enrol_credential,
    seed_clinic,
    wait_stored,
)
from device_adapters.cloud import oura
from device_adapters.cloud.fakes.google_health import GoogleHealthFake
from device_adapters.cloud.fakes.oura import OuraFake
from device_adapters.cloud.fakes.server import ServedApp, serve
from rtm.settings import Settings

# (vendor, device model, zone): one patient each, far from the Polar patients' zones.
PATIENTS = (("google-health", "google-health-cloud", "America/Los_Angeles"), ("oura", "oura-cloud", "Asia/Tokyo"))
G_SECRET = "Bearer demo-google-subscriber"
O_TOKEN = "demo-oura-verification"


def run_cloud_patients(settings: Settings, days: int, seed: int, timeout_s: float = 60.0) -> list[VendorPatient]:
    days = max(1, min(days, 28))
    g, o = GoogleHealthFake(), OuraFake()
    served: list[ServedApp] = []
    try:
        for fake in (g, o):
            s = serve(fake.app())
            served.append(s)
            fake.base_url = s.url
        gateway = demo_gateway(
            settings, days,
            google_health_client_id=g.client_id, google_health_client_secret=SecretStr(g.client_secret),
            google_health_authorize_url=f"{g.base_url}/o/oauth2/v2/auth", google_health_token_url=f"{g.base_url}/token",
            google_health_api_base=g.base_url, google_health_webhook_secret=SecretStr(G_SECRET),
            oura_client_id=o.client_id, oura_client_secret=SecretStr(o.client_secret),
            oura_authorize_url=f"{o.base_url}/oauth/authorize", oura_token_url=f"{o.base_url}/oauth/token",
            oura_api_base=o.base_url, oura_verification_token=SecretStr(O_TOKEN),
        )
        served.append(gateway)
        return _run(settings, g, o, gateway.url, days, seed, timeout_s)
    finally:
        for s in reversed(served):
            s.stop()


def _run(settings: Settings, g: GoogleHealthFake, o: OuraFake, gw_url: str, days: int, seed: int,
         timeout_s: float) -> list[VendorPatient]:
    since = datetime.now(UTC) - timedelta(days=days)
    rows = [(*demo_ids(vendor, seed, since), model) for vendor, model, _ in PATIENTS]
    clinic = seed_clinic(settings, [(p, e, m, m.removesuffix("-cloud")) for p, e, m in rows],
                         since.date() - timedelta(days=1))
    out: list[tuple[str, str, str, str, int, int, datetime]] = []
    with httpx.Client(base_url=gw_url, timeout=30) as http:
        for k, ((patient, episode, model), (vendor, _, tz)) in enumerate(zip(rows, PATIENTS, strict=True)):
            zone = ZoneInfo(tz)
            user = f"{vendor}-user-{seed}"
            today = datetime.now(zone).date()
            start = since.astimezone(zone).date() + timedelta(days=1)  # the first whole local day enrolled
            total = 0
            for n in range((today - start).days):
                d = start + timedelta(days=n)
                steps = [s for _, s in _minute_steps(seed, 80_000 + 100 * k + n, d)]
                if vendor == "google-health":
                    g.add_minutes(user, tz, d, 0, steps)
                else:
                    o.set_day(user, d, sum(steps), tz)
                total += sum(steps)
            cred = enrol_credential(http, settings, clinic, patient, episode, f"{patient}-{model}", model, since)
            r = http.post(f"/v1/vendor-connections/{vendor}/authorize",
                          headers={"Authorization": f"Bearer {clinic}"}, json={"credential_id": cred, "tz": tz})
            r.raise_for_status()
            consent = g.consent if vendor == "google-health" else o.consent
            back = httpx.URL(consent(r.json()["authorization_url"], user))
            http.get(f"/v1/oauth/{vendor}/callback?{back.query.decode()}").raise_for_status()
            out.append((vendor, patient, user, tz, total, (today - start).days + 1,
                        datetime.combine(start, datetime.min.time(), zone)))
    # Webhooks: Google verifies the subscriber endpoint (two POSTs), Oura runs its challenge.
    r = httpx.post(f"{g.base_url}/v4/projects/demo/subscribers", headers={"Authorization": "Bearer demo"},
                   json={"endpointUri": f"{gw_url}/v1/webhooks/google-health",
                         "endpointAuthorization": {"secret": G_SECRET}}, timeout=30)
    if r.status_code != 200:
        raise RuntimeError(f"the Google subscriber was not created: {r.text}")

    async def subscribe() -> None:
        async with httpx.AsyncClient() as h:
            await oura.OuraClient(h, o.base_url, 10.0, o.client_id, o.client_secret).ensure_subscriptions(
                f"{gw_url}/v1/webhooks/oura", O_TOKEN)

    asyncio.run(subscribe())
    results: list[VendorPatient] = []
    for i, (vendor, patient, user, tz, total, n, window) in enumerate(out):
        now = datetime.now(ZoneInfo(tz))
        today, minute = now.date(), now.hour * 60 + now.minute
        steps = [s for _, s in _minute_steps(seed, 90_000 + i, today)][: max(minute - 1, 0)]
        if vendor == "google-health":
            g.add_minutes(user, tz, today, 0, steps)
            status = g.push(user, now.astimezone(UTC) - timedelta(minutes=5), now.astimezone(UTC))
        elif now.hour >= oura.DAY_START.hour:  # Oura's today has begun: a running total, twice
            o.set_day(user, today, sum(steps) // 2, tz)
            if o.push(user, today) != 200:
                raise RuntimeError("the gateway refused Oura's delivery")
            time.sleep(1.0)  # a later delivery: another timestamp, another notification
            o.set_day(user, today, sum(steps), tz)
            status = o.push(user, today)
        else:
            status, steps = 200, []
        if status != 200:
            raise RuntimeError(f"the gateway answered {vendor}'s webhook with {status}")
        out[i] = (vendor, patient, user, tz, total + sum(steps), n, window)
    with httpx.Client(base_url=gw_url, timeout=30) as http:
        for vendor, patient, user, tz, total, n, window in out:
            stored = wait_stored(settings, patient, window, total, timeout_s)
            health = http.get(f"/v1/vendor-connections?patient_id={patient}",
                              headers={"Authorization": f"Bearer {clinic}"}).json()["connections"]
            results.append(VendorPatient(vendor, patient, user, tz, total, stored, n,
                                         health[0]["status"] if health else "missing"))
    return results
