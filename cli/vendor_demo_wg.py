"""The main job's Withings and Garmin patients, like the Polar ones (cli/vendor_demo.py): each
connected through the real OAuth flow of a real gateway against the vendor's local fake, then
backfilled and kept current the vendor's way, and the totals stored checked against the vendor's.

- Withings: the past days are fetched in <= 24 h ranges at connection; later steps of today
  arrive as an unsigned notification that makes the gateway fetch again.
- Garmin: the past days were synced to Garmin before the clinic connected, so they come from
  backfill requests (Garmin answers 202 and pings; the gateway pulls); today's 15-minute epochs
  are pinged, then a grown window is pushed (a running total that replaces the earlier one).
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
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
from device_adapters.cloud.fakes.garmin import GarminFake
from device_adapters.cloud.fakes.server import ServedApp, serve
from device_adapters.cloud.fakes.withings import WithingsFake
from rtm.settings import Settings

PATIENTS = (("withings", "America/Denver"), ("garmin", "Asia/Kolkata"))  # Kolkata: a half-hour offset


def _minutes(seed: int, user: int, d: date, tz: ZoneInfo) -> list[tuple[int, int]]:
    """The demo's minute steps of a local day as (unix start, steps), walking minutes only."""
    out = []
    for stamp, steps in _minute_steps(seed, user, d):
        if steps:
            out.append((int(datetime.fromisoformat(stamp).replace(tzinfo=tz).timestamp()), steps))
    return out


def _epochs(user: str, minutes: list[tuple[int, int]], tz: ZoneInfo) -> list[dict[str, Any]]:
    windows: dict[int, int] = {}
    for t, steps in minutes:
        windows[t - t % 900] = windows.get(t - t % 900, 0) + steps
    out = []
    for start, steps in sorted(windows.items()):
        offset = datetime.fromtimestamp(start, tz).utcoffset()
        out.append({"summaryId": f"{user}-{start}-WALKING", "activityType": "WALKING", "steps": steps,
                    "durationInSeconds": 900, "activeTimeInSeconds": 600, "startTimeInSeconds": start,
                    "startTimeOffsetInSeconds": int(offset.total_seconds()) if offset else 0})
    return out


def run_wg_patients(settings: Settings, days: int, seed: int, timeout_s: float = 60.0) -> list[VendorPatient]:
    days = max(1, min(days, 28))
    wfake, gfake = WithingsFake(), GarminFake()
    served: list[ServedApp] = [serve(wfake.app()), serve(gfake.app())]
    wfake.base_url, gfake.base_url = served[0].url, served[1].url
    hook_secret = secrets.token_urlsafe(16)
    try:
        gateway = demo_gateway(
            settings, days,
            withings_client_id=wfake.client_id, withings_client_secret=SecretStr(wfake.client_secret),
            withings_authorize_url=f"{wfake.base_url}/oauth2_user/authorize2",
            withings_token_url=f"{wfake.base_url}/v2/oauth2", withings_api_base=wfake.base_url,
            garmin_client_id=gfake.client_id, garmin_client_secret=SecretStr(gfake.client_secret),
            garmin_authorize_url=f"{gfake.base_url}/oauth2Confirm",
            garmin_token_url=f"{gfake.base_url}/di-oauth2-service/oauth/token", garmin_api_base=gfake.base_url,
            garmin_webhook_secret=SecretStr(hook_secret),
        )
        served.append(gateway)
        gfake.endpoint = f"{gateway.url}/v1/webhooks/garmin/{hook_secret}"
        return _run(settings, wfake, gfake, gateway.url, days, seed, timeout_s)
    finally:
        for s in reversed(served):
            s.stop()


def _run(settings: Settings, wfake: WithingsFake, gfake: GarminFake, gw_url: str, days: int, seed: int,
         timeout_s: float) -> list[VendorPatient]:
    since = datetime.now(UTC) - timedelta(days=days)
    patients = [demo_ids(v, seed, since, 0) for v, _ in PATIENTS]
    clinic = seed_clinic(settings, [(p, e, f"{v}-cloud", v) for (p, e), (v, _) in zip(patients, PATIENTS, strict=True)],
                         since.date() - timedelta(days=1))
    todo: list[tuple[str, str, int, str, int, int, datetime]] = []
    with httpx.Client(base_url=gw_url, timeout=30) as http:
        for k, ((patient, episode), (vendor, tzname)) in enumerate(zip(patients, PATIENTS, strict=True)):
            tz = ZoneInfo(tzname)
            user = 80_000 + seed * 10 + k
            today = datetime.now(tz).date()
            start = since.astimezone(tz).date() + timedelta(days=1)  # the first whole local day
            past = [m for n in range((today - start).days) for m in _minutes(seed, user, start + timedelta(days=n), tz)]
            if vendor == "withings":
                wfake.add_steps(user, dict(past))
            else:
                for n in range((today - start).days):
                    d = start + timedelta(days=n)
                    gfake.upload(str(user), "epochs", _epochs(str(user), _minutes(seed, user, d, tz), tz))
            cred = enrol_credential(http, settings, clinic, patient, episode, f"{patient}-{vendor}",
                                    f"{vendor}-cloud", since)
            r = http.post(f"/v1/vendor-connections/{vendor}/authorize", headers={"Authorization": f"Bearer {clinic}"},
                          json={"credential_id": cred, "tz": tzname})
            r.raise_for_status()
            url = r.json()["authorization_url"]
            back = httpx.URL(wfake.consent(url, user) if vendor == "withings" else gfake.consent(url, str(user)))
            http.get(f"/v1/oauth/{vendor}/callback?{back.query.decode()}").raise_for_status()
            window = datetime.combine(start, datetime.min.time(), tz)
            todo.append((patient, vendor, user, tzname, sum(s for _, s in past), (today - start).days + 1, window))
        # Today, the vendor's way: Withings notifies, Garmin pings then pushes a grown window.
        for i, (patient, vendor, user, tzname, total, n, window) in enumerate(todo):
            tz = ZoneInfo(tzname)
            now = int(time.time())
            today_min = [(t, s) for t, s in _minutes(seed, user, datetime.now(tz).date(), tz) if t < now - 60]
            if vendor == "withings":
                wfake.add_steps(user, dict(today_min))
                statuses = wfake.notify(user, now - 3600, now)
            else:  # Garmin sends complete 15-minute windows
                today_min = [(t, s) for t, s in today_min if t - t % 900 + 900 < now - 60]
                epochs = _epochs(str(user), today_min, tz)
                statuses = [gfake.notify(str(user), "epochs", gfake.upload(str(user), "epochs", epochs))]
                if epochs:  # the last window grows after the ping: pushed, it replaces
                    epochs[-1] = {**epochs[-1], "steps": epochs[-1]["steps"] + 25}
                    gfake.mode = "push"
                    statuses.append(gfake.notify(str(user), "epochs", gfake.upload(str(user), "epochs", epochs[-1:])))
                    gfake.mode = "ping"
                today_min.append((0, 25 if epochs else 0))
            if any(s != 200 for s in statuses):
                raise RuntimeError(f"the gateway answered a {vendor} notification with {statuses}")
            todo[i] = (patient, vendor, user, tzname, total + sum(s for _, s in today_min), n, window)
        results: list[VendorPatient] = []
        for patient, vendor, user, tzname, total, n, window in todo:
            stored = wait_stored(settings, patient, window, total, timeout_s)
            health = http.get(f"/v1/vendor-connections?patient_id={patient}",
                              headers={"Authorization": f"Bearer {clinic}"}).json()["connections"]
            results.append(VendorPatient(vendor, patient, user, tzname, total, stored, n,
                                         health[0]["status"] if health else "missing"))
    return results
