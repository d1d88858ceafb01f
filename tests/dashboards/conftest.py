"""A database of the module's own with two demo clinics, and the app served on a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

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


@contextmanager
def serve(asgi: Any, port: int | None = None) -> Iterator[str]:
    """An ASGI app served by uvicorn on a loopback port in a thread, until the block ends."""
    port = port or _free_port()
    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def app_url(clinics: Clinics) -> Iterator[str]:
    port = _free_port()
    with serve(create_app(clinics.settings, AppSettings(port=port)), port) as url:
        assert httpx.get(url + "/healthz").status_code == 200
        yield url
