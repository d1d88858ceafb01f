"""The Withings and Garmin fakes over real HTTP, and a gateway configured for them (and Polar)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from device_adapters.cloud.fakes.garmin import GarminFake
from device_adapters.cloud.fakes.polar import PolarFake
from device_adapters.cloud.fakes.server import serve
from device_adapters.cloud.fakes.withings import WithingsFake
from rtm.settings import Settings
from tests.ingest.conftest import build_client
from tests.ingest.test_upload import assert_problem

GARMIN_SECRET = "garmin-endpoint-test-secret"


def wg_vendor(w: WithingsFake, g: GarminFake, **overrides: Any) -> dict[str, Any]:
    return {
        "withings_client_id": w.client_id, "withings_client_secret": SecretStr(w.client_secret),
        "withings_authorize_url": f"{w.base_url}/oauth2_user/authorize2",
        "withings_token_url": f"{w.base_url}/v2/oauth2", "withings_api_base": w.base_url,
        "garmin_client_id": g.client_id, "garmin_client_secret": SecretStr(g.client_secret),
        "garmin_authorize_url": f"{g.base_url}/oauth2Confirm",
        "garmin_token_url": f"{g.base_url}/di-oauth2-service/oauth/token", "garmin_api_base": g.base_url,
        "garmin_webhook_secret": SecretStr(GARMIN_SECRET),
        **overrides,
    }


def wire(client: TestClient, w: WithingsFake, g: GarminFake) -> None:
    """The fakes deliver their notifications to this gateway."""
    def post(url: str, body: bytes, headers: dict[str, str]) -> int:
        return client.post(httpx.URL(url).path, content=body, headers=headers).status_code

    w.deliver = post
    g.deliver = post
    g.endpoint = f"http://testserver/v1/webhooks/garmin/{GARMIN_SECRET}"


@pytest.fixture(scope="session")
def withings_fake() -> Iterator[WithingsFake]:
    fake = WithingsFake()
    served = serve(fake.app())
    fake.base_url = served.url
    yield fake
    served.stop()


@pytest.fixture(scope="session")
def garmin_fake() -> Iterator[GarminFake]:
    fake = GarminFake()
    served = serve(fake.app())
    fake.base_url = served.url
    yield fake
    served.stop()


def wg_client(db_settings: Settings, polar: PolarFake, w: WithingsFake, g: GarminFake,
              **vendor: Any) -> TestClient:
    client = build_client(db_settings, polar, vendor=wg_vendor(w, g, **vendor))
    wire(client, w, g)
    return client


def forget_connections(db_settings: Settings) -> None:
    """Drop this module's Withings and Garmin connections: their tokens are sealed under the test
    key, and the key-rotation test re-encrypts every stored token under keys of its own."""
    with psycopg.connect(db_settings.dsn("owner"), autocommit=True) as conn:
        conn.execute("delete from vendor_notifications where vendor in ('withings', 'garmin')")
        conn.execute("delete from vendor_connections where vendor in ('withings', 'garmin')")


def connect(client: TestClient, vendor: str, consent: Any, dev: Any, user: Any, tz: str) -> None:
    """The clinic asks for a link, the patient consents at the fake, the browser comes back."""
    r = client.post(
        f"/v1/vendor-connections/{vendor}/authorize", json={"credential_id": dev.credential_id, "tz": tz},
        headers={"Authorization": f"Bearer {dev.care.clinic_token}"},
    )
    assert r.status_code == 201, r.text
    back = httpx.URL(consent(r.json()["authorization_url"], user))
    assert back.path == f"/v1/oauth/{vendor}/callback"
    done = client.get(f"{back.path}?{back.query.decode()}")
    assert done.status_code == 200 and done.json()["connected"] is True, done.text
    assert_problem(client.get(f"{back.path}?{back.query.decode()}"), 400, "invalid-request")
