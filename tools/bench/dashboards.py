"""`rtm bench dashboards`: server time of the clinic app's pages on a clinic of 500 patients with
6 months of data (a fresh database of the local stack, dropped afterwards).

The server time is the app's own Server-Timing header (request in, response out, database
included), so the client's overhead on this shared machine is not counted."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import socket
import threading
import time
import uuid

import httpx
import numpy as np
import uvicorn
from psycopg import sql

from dashboards import demo
from dashboards.settings import AppSettings
from dashboards.web import create_app
from rtm.db.migrate import migrate
from rtm.settings import get_settings
from rtm.stack import postgres

_TIMING = re.compile(r"app;dur=([0-9.]+)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rtm bench dashboards", description=__doc__)
    ap.add_argument("--patients", type=int, default=500)
    ap.add_argument("--days", type=int, default=182)
    ap.add_argument("--requests", type=int, default=60, help="requests per page kind")
    args = ap.parse_args(argv)
    base = get_settings()
    postgres.up(base)
    name = f"rtm_bench_app_{uuid.uuid4().hex[:8]}"
    s = base.model_copy(update={"pg_database": name})
    postgres.ensure_database(s)
    try:
        migrate(s)
        t0 = time.perf_counter()
        password = "bench-" + uuid.uuid4().hex
        staff = demo.ensure_staff(s, "bench-clinic", password)
        ids = demo.seed_patients(s, "bench-clinic", staff.staff_id("therapist"), args.patients, args.days)
        seeded = time.perf_counter() - t0
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(s, AppSettings(port=port)), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                httpx.get(url + "/healthz")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        times: dict[str, list[float]] = {"queue": [], "patient": [], "billing": []}
        rng = random.Random(14)
        with httpx.Client(base_url=url) as therapist, httpx.Client(base_url=url) as biller:
            for client, role in ((therapist, "therapist"), (biller, "biller")):
                r = client.post("/login", data={"email": staff.email(role), "password": password})
                if r.status_code != 303:
                    raise RuntimeError(f"sign-in failed: {r.status_code}")
            for _ in range(args.requests):
                for kind, client, path in (("queue", therapist, "/queue"),
                                           ("patient", therapist, f"/patients/{rng.choice(ids)}"),
                                           ("billing", biller, "/billing")):  # fmt: skip
                    r = client.get(path)
                    if r.status_code != 200:
                        raise RuntimeError(f"{path}: {r.status_code}")
                    m = _TIMING.search(r.headers.get("server-timing", ""))
                    times[kind].append(float(m.group(1)) if m else float("nan"))
        server.should_exit = True
        thread.join(10)
        every = np.array([t for v in times.values() for t in v])
        print(f"clinic app, {args.patients} patients x {args.days} days (seeded in {seeded:.1f} s), "
              f"{args.requests} requests per page; {os.cpu_count()} cores, "
              f"{platform.processor() or platform.machine()}")
        print(f"{'page':10s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s}")
        for kind, v in times.items():
            a = np.array(v)
            print(f"{kind:10s} {np.percentile(a, 50):8.1f} {np.percentile(a, 95):8.1f} {a.max():8.1f}")
        result = {"patients": args.patients, "days": args.days, "requests": int(every.size),
                  "p50_ms": round(float(np.percentile(every, 50)), 1),
                  "p95_ms": round(float(np.percentile(every, 95)), 1),
                  "pages": {k: {"p50_ms": round(float(np.percentile(v, 50)), 1),
                                "p95_ms": round(float(np.percentile(v, 95)), 1)} for k, v in times.items()}}
        print(json.dumps(result))
        return 0
    finally:
        with postgres.admin_connect(base) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
