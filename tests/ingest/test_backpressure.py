"""One client cannot stall or overload the gateway: a gzip bomb is refused after bounded work off the
event loop, bogus tokens stop costing database lookups, clinic keys and unauthenticated routes are
rate-limited, and a database that goes away gets 503 with Retry-After at once (through a TCP relay
in front of the real database, closed to take the database away and reopened to bring it back)."""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from device_adapters.cloud.fakes.polar import PolarFake
from ingest.settings import GatewaySettings
from rtm.settings import Settings
from rtm.stack.broker import free_port
from tests.ingest.conftest import build_client, enrol, frames, imu_batch, make_care

pytestmark = pytest.mark.integration
FRAME = "application/vnd.rtm.imu-frame"
DEFAULTS = GatewaySettings.model_fields


def _lookups() -> float:
    return sum(REGISTRY.get_sample_value("rtm_ingest_auth_lookups_total", {"kind": k}) or 0.0
               for k in ("device", "clinic"))


def test_gzip_bomb_is_refused_cheaply_and_healthz_keeps_answering(
    db_settings: Settings, polar_fake: PolarFake
) -> None:
    # 60 MiB of JSON in about 60 KiB of gzip, against the default limits.
    bomb = gzip.compress(b'{"events": [' + b" " * (60 << 20) + b"]}", compresslevel=9)
    assert len(bomb) < 100 << 10
    care = make_care(db_settings)
    with build_client(db_settings, polar_fake, max_body_bytes=DEFAULTS["max_body_bytes"].default,
                      max_decoded_bytes=DEFAULTS["max_decoded_bytes"].default) as client:
        dev = enrol(client, care)
        worst = 0.0
        done = threading.Event()

        def probe() -> None:
            nonlocal worst
            while not done.is_set():
                started = time.monotonic()
                assert client.get("/healthz").status_code == 200
                worst = max(worst, time.monotonic() - started)

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            for _ in range(3):
                r = client.post("/v1/events", content=bomb, headers={
                    **dev.headers, "Content-Type": "application/json", "Content-Encoding": "gzip"})
                assert r.status_code == 413, r.text
                assert r.json()["code"] == "payload-too-large"
        finally:
            done.set()
            prober.join()
        assert worst < 0.5, f"/healthz took {worst:.2f} s while bombs were inflated"


def test_bogus_tokens_do_not_each_cost_a_database_lookup(db_settings: Settings, polar_fake: PolarFake) -> None:
    with build_client(db_settings, polar_fake, auth_failure_burst=20, auth_failure_rate_per_s=1.0) as client:
        before = _lookups()
        statuses: dict[int, int] = {}
        for i in range(1000):
            token = f"rtmd_{i:016x}." + "A" * 43
            r = client.post("/v1/events", content=b"x", headers={"Authorization": f"Bearer {token}",
                                                                  "Content-Type": FRAME})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert set(statuses) <= {401, 429}, statuses
        assert statuses.get(429, 0) > 900
        assert _lookups() - before <= 40
        # The same unknown token again is answered from the negative cache, not the database.
        before = _lookups()
        for _ in range(50):
            client.post("/v1/events", content=b"x", headers={
                "Authorization": "Bearer rtmd_0000000000000001." + "A" * 43, "Content-Type": FRAME})
        assert _lookups() == before


def test_clinic_keys_and_unauthenticated_routes_are_rate_limited(
    db_settings: Settings, polar_fake: PolarFake
) -> None:
    care = make_care(db_settings)
    with build_client(db_settings, polar_fake, clinic_burst=5, clinic_rate_per_s=0.5,
                      ip_burst=5, ip_rate_per_s=0.5) as client:
        clinic = {"Authorization": f"Bearer {care.clinic_token}"}
        codes = [client.get("/v1/billing/summaries", headers=clinic).status_code for _ in range(8)]
        assert codes[:5] == [200] * 5 and codes[5:] == [429] * 3, codes
        limited = client.get("/v1/billing/summaries", headers=clinic)
        assert limited.json()["code"] == "rate-limited" and int(limited.headers["retry-after"]) >= 1
        probes = [client.get("/readyz").status_code for _ in range(8)]
        assert probes[:5] == [200] * 5 and probes[5:] == [429] * 3, probes
        assert all(client.get("/healthz").status_code == 200 for _ in range(20))  # liveness stays free


class TcpRelay:
    """Forwards a local port to the database; `close` drops every connection and refuses new ones,
    as a database that went away does."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self._conns: list[socket.socket] = []
        self._server: socket.socket | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        server = socket.create_server(("127.0.0.1", self.port))
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept(); close() would not
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        with self._lock:
            for s in self._conns:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._conns = []


def test_database_down_gets_503_with_retry_after_within_a_second(
    db_settings: Settings, polar_fake: PolarFake
) -> None:
    relay = TcpRelay(db_settings.pg_port)
    relay.open()
    via_relay = db_settings.model_copy(update={"pg_port": relay.port})
    care = make_care(db_settings)
    try:
        with build_client(via_relay, polar_fake, db_acquire_timeout_s=0.5) as client:
            dev = enrol(client, care)
            headers: dict[str, Any] = {**dev.headers, "Content-Type": FRAME}
            batch = imu_batch(dev, n=100, stream="db-down-0")
            assert client.post("/v1/events", content=frames(batch), headers=headers).status_code == 202
            relay.close()
            for i in range(1, 4):
                started = time.monotonic()
                r = client.post("/v1/events", content=frames(imu_batch(dev, n=100, stream=f"db-down-{i}")),
                                headers=headers)
                elapsed = time.monotonic() - started
                assert r.status_code == 503, r.text
                assert r.json()["code"] == "database-unavailable"
                assert int(r.headers["retry-after"]) >= 1
                assert elapsed < 1.0, f"503 after {elapsed:.2f} s"
            started = time.monotonic()
            billing = client.get("/v1/billing/summaries", headers={"Authorization": f"Bearer {care.clinic_token}"})
            assert billing.status_code == 503 and time.monotonic() - started < 1.5
            assert client.get("/healthz").status_code == 200
            started = time.monotonic()
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["database"] != "ok"
            assert time.monotonic() - started < 1.0
            relay.open()  # the database is back: uploads are accepted again
            deadline = time.monotonic() + 15
            while True:
                r = client.post("/v1/events", content=frames(imu_batch(dev, n=100, stream="db-back")),
                                headers=headers)
                if r.status_code == 202 or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert r.status_code == 202, r.text
    finally:
        relay.close()
