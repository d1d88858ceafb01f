"""The hub side of pairing and health, against the real gateway (uvicorn, the session's broker and
database): `rtm enrol pairing-code` issues a code, `rtm hub pair CODE` redeems it and writes the
credential into the configuration (mode 0600), the paired hub uploads with it, and its health
reports land in the hub_health table."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from device_adapters.hub.agent import HubAgent
from device_adapters.hub.config import HubConfig
from device_adapters.hub.health import report_health
from rtm.settings import Settings
from tests.hub.test_hub_gateway import enrol
from tests.ingest.conftest import PEPPER

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def rtm(db_settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RTM_PG_DATABASE": db_settings.pg_database, "RTM_GATEWAY_PEPPER": PEPPER}
    return subprocess.run([sys.executable, "-c", "from cli.main import main; raise SystemExit(main())", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def write_config(tmp_path: Path, url: str, devices: list[dict[str, Any]]) -> Path:
    path = tmp_path / "hub.json"
    path.write_text(json.dumps({"gateway_url": url, "spool_path": str(tmp_path / "spool.db"), "hub_id": "hub-test",
                                "devices": devices}))
    path.chmod(0o644)  # as an installer might leave it: pairing makes it 0600
    return path


def clinic_of(db_settings: Settings, device_id: str) -> str:
    with psycopg.connect(db_settings.dsn("owner")) as conn:
        row = conn.execute("select clinic_id from ingest_device_credentials where device_id = %s and "
                           "revoked_at is null", (device_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_pair_stores_the_credential_and_the_hub_reports_health(gateway_url: str, db_settings: Settings,
                                                               tmp_path: Path) -> None:
    patient, [(device_id, enrol_token)] = enrol(gateway_url, db_settings, 1)
    clinic = clinic_of(db_settings, device_id)
    issued = rtm(db_settings, "enrol", "pairing-code", "--clinic", clinic, "--device", device_id)
    assert issued.returncode == 0, issued.stderr
    code = issued.stdout.split("(shown once): ")[1].split()[0]

    config = write_config(tmp_path, gateway_url, [
        {"device_id": device_id, "patient_id": "unknown-yet", "profile": "movesense-imu6", "name": "Movesense 1"}])
    paired = rtm(db_settings, "hub", "pair", code, "--config", str(config))
    assert paired.returncode == 0, paired.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert code not in paired.stdout + paired.stderr
    cfg = HubConfig.load(config)
    dev = cfg.devices[0]
    assert dev.token is not None and dev.patient_id == patient and dev.body_site == "thigh_left"
    token = dev.token.get_secret_value()
    assert token != enrol_token and token not in paired.stdout + paired.stderr
    assert not list(tmp_path.glob(".hub-*"))  # no temporary file left behind

    # The code is spent: a second pair fails and leaves the configuration as it was.
    again = rtm(db_settings, "hub", "pair", code, "--config", str(config), "--profile", "movesense-imu6",
                "--name", "x")
    assert again.returncode == 1 and "already used" in again.stderr
    assert HubConfig.load(config).devices[0].token == dev.token

    # The paired token works; the enrolment's does not any more.
    body = {"hub_id": "h", "agent_version": "1", "at": "2026-01-01T00:00:00Z", "connected": True,
            "spool_depth": 0, "spool_bytes": 0, "evictions": 0}
    assert httpx.put(f"{gateway_url}/v1/hub/health", json=body, headers={
        "Authorization": f"Bearer {enrol_token}"}).status_code == 401

    async def health() -> dict[str, int]:
        agent = HubAgent(cfg)
        try:
            agent.uploader.stats.last_sync_by_device[device_id] = 1_700_000_000.0
            return await report_health(agent)
        finally:
            await agent.close()

    assert asyncio.run(health()) == {device_id: 204}
    with psycopg.connect(db_settings.dsn("reader")) as conn:
        row = conn.execute("select hub_id, patient_id, connected, spool_depth, evictions, last_sync, agent_version "
                           "from hub_health where device_id = %s", (device_id,)).fetchone()
    assert row is not None
    assert row[:5] == ("hub-test", patient, False, 0, 0)
    assert row[5].timestamp() == 1_700_000_000.0 and row[6]


def test_pair_adds_a_device_given_its_profile(gateway_url: str, db_settings: Settings, tmp_path: Path) -> None:
    _, [(device_id, _)] = enrol(gateway_url, db_settings, 1)
    issued = rtm(db_settings, "enrol", "pairing-code", "--clinic", clinic_of(db_settings, device_id), "--device",
                 device_id)
    code = issued.stdout.split("(shown once): ")[1].split()[0]
    config = write_config(tmp_path, gateway_url, [])
    refused = rtm(db_settings, "hub", "pair", code, "--config", str(config))
    assert refused.returncode == 1 and "every configured device is paired" in refused.stderr  # code not spent
    paired = rtm(db_settings, "hub", "pair", code, "--config", str(config), "--profile", "movesense-imu6",
                 "--name", "Movesense 7", "--profile-options", '{"rate_hz": 104}')
    assert paired.returncode == 0, paired.stderr
    dev = HubConfig.load(config).devices[0]
    assert (dev.device_id, dev.name, dev.profile_options) == (device_id, "Movesense 7", {"rate_hz": 104})
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
