"""The real gateway (uvicorn on a free port, the session's broker and database) for the hub tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from ingest.app import create_app
from rtm.settings import Settings
from rtm.stack.broker import free_port
from tests.ingest.conftest import gateway_config


@pytest.fixture(scope="module")
def gateway_url(db_settings: Settings) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(db_settings, gateway_config()), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
