"""A database of the module's own with two demo clinics, and the app served on a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from dashboards import demo
from dashboards.settings import AppSettings
from dashboards.web import create_app
from rtm.settings import Settings
from tests.conftest import fresh_database

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Clinics:
    settings: Settings
    a: demo.DemoStaff
    b: demo.DemoStaff
    a_patients: list[str]
    b_patients: list[str]


@pytest.fixture(scope="module")
def clinics(stack_settings: Settings) -> Iterator[Clinics]:
    with fresh_database(stack_settings, "app") as s:
        a = demo.ensure_staff(s, "clinic-a", PASSWORD)
        b = demo.ensure_staff(s, "clinic-b", PASSWORD)
        pa = demo.seed_patients(s, "clinic-a", a.staff_id("therapist"), 8, 45, seed=1)
        pb = demo.seed_patients(s, "clinic-b", b.staff_id("therapist"), 4, 45, seed=2)
        yield Clinics(s, a, b, pa, pb)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def app_url(clinics: Clinics) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(clinics.settings, AppSettings(port=port)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.1)
    yield url
    server.should_exit = True
    thread.join(10)
