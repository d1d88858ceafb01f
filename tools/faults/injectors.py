"""The faults: what breaks, when, and how the devices misbehave. A fault either acts on the stack
while its slice of the cohort uploads (`inject`, at a fraction `at` of the slice's requests) or
changes what the devices send (`shape`), or both."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import cache

import aiohttp

from tools.faults.load import Device, Upload, conflicting, poisoned
from tools.faults.stack import FaultStack, http_status, rss_mib

BOMB_MIB = 60  # what the issue measured: an 89 KiB body inflating to 60 MiB of JSON
STORM_COPIES = 5  # each request sent this many times at once
HEALTH_PROBE_S = 0.1
RSS_SAMPLE_S = 0.05


@dataclass(frozen=True)
class Context:
    stack: FaultStack
    devices: list[Device]
    outage_s: float


Shape = Callable[[dict[Device, list[Upload]], random.Random], dict[Device, list[Upload]]]


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    inject: Callable[[Context], Awaitable[list[str]]] | None = None
    shape: Shape | None = None
    at: float = 0.35  # share of the slice's requests answered before the fault is injected


async def _broker_restart(ctx: Context) -> list[str]:
    started = time.monotonic()
    await asyncio.to_thread(ctx.stack.restart_broker, ctx.outage_s)
    return [f"broker down {time.monotonic() - started:.1f} s"]


async def _broker_crash(ctx: Context) -> list[str]:
    started = time.monotonic()
    await asyncio.to_thread(ctx.stack.restart_broker, ctx.outage_s, True)
    return [f"broker down {time.monotonic() - started:.1f} s"]


async def _database_restart(ctx: Context) -> list[str]:
    started = time.monotonic()
    await asyncio.to_thread(ctx.stack.restart_database, ctx.outage_s)
    return [f"database down {time.monotonic() - started:.1f} s"]


async def _worker_kill(ctx: Context) -> list[str]:
    await asyncio.to_thread(ctx.stack.kill_worker, 0)
    return []


async def _gateway_restart(ctx: Context) -> list[str]:
    started = time.monotonic()
    await asyncio.to_thread(ctx.stack.restart_gateway)
    return [f"gateway away {time.monotonic() - started:.1f} s"]


@cache
def bomb_body(mib: int = BOMB_MIB) -> bytes:
    """gzip of `{"events": [{"kind": "activity_interval"}, ...]}` inflating to `mib` MiB."""
    unit = b'{"kind":"activity_interval"},'
    per_chunk = (1 << 20) // len(unit)
    units = (mib << 20) // len(unit) + 1
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [z.compress(b'{"events":[')]
    parts += [z.compress(unit * min(per_chunk, units - k)) for k in range(0, units, per_chunk)]
    parts += [z.compress(b'{"kind":"activity_interval"}]}'), z.flush()]
    return b"".join(parts)


async def _gzip_bomb(ctx: Context) -> list[str]:
    """One device posts the bomb while the others keep uploading; meanwhile /healthz is probed and
    the gateway's memory sampled."""
    gw = ctx.stack.gateway
    assert gw is not None
    body = bomb_body()
    device = ctx.devices[0]
    worst_probe = 0.0
    peak_rss = [0.0]
    done = asyncio.Event()
    stop_sampling = threading.Event()

    async def probe() -> None:
        nonlocal worst_probe
        while not done.is_set():
            t = time.monotonic()
            await asyncio.to_thread(http_status, f"{gw.url}/healthz", 30.0)
            worst_probe = max(worst_probe, time.monotonic() - t)
            await asyncio.sleep(HEALTH_PROBE_S)

    def sample_rss() -> None:  # a thread of its own: a blocked gateway must not block the sampling
        while not stop_sampling.wait(RSS_SAMPLE_S):
            peak_rss[0] = max(peak_rss[0], rss_mib(gw.proc.pid) or 0.0)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    prober = asyncio.create_task(probe())
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http, http.post(
            f"{gw.url}/v1/events", data=body,
            headers={"Authorization": f"Bearer {device.token}", "Content-Type": "application/json",
                     "Content-Encoding": "gzip"},
        ) as resp:
            answer = f"{resp.status} {(await resp.json(content_type=None) or {}).get('code', '')}".strip()
    except (aiohttp.ClientError, TimeoutError) as exc:
        answer = f"no answer ({type(exc).__name__})"
    took = time.monotonic() - started
    done.set()
    await prober
    stop_sampling.set()
    sampler.join()
    return [f"bomb {len(body) >> 10} KiB -> {BOMB_MIB} MiB: {answer} in {took:.1f} s, "
            f"/healthz worst {worst_probe:.1f} s, gateway RSS peak {peak_rss[0]:,.0f} MiB"]


def _storm(uploads: dict[Device, list[Upload]], rng: random.Random) -> dict[Device, list[Upload]]:
    return {d: [replace(u, copies=STORM_COPIES) for u in ups] for d, ups in uploads.items()}


def _out_of_order(uploads: dict[Device, list[Upload]], rng: random.Random) -> dict[Device, list[Upload]]:
    """One event per request, in a shuffled order: end markers before starts, IMU batches of a
    recording in any order, steps of later days before earlier ones."""
    out = {}
    for d, ups in uploads.items():
        singles = [Upload(d, [item]) for u in ups for item in u.items]
        rng.shuffle(singles)
        out[d] = singles
    return out


def _poison(uploads: dict[Device, list[Upload]], rng: random.Random) -> dict[Device, list[Upload]]:
    """The first step interval of each device carries a NUL in a string field."""
    out = {}
    for d, ups in uploads.items():
        new, done = [], False
        for u in ups:
            if not done and any(i.kind == "activity_interval" for i in u.items):
                k = next(n for n, i in enumerate(u.items) if i.kind == "activity_interval")
                u = replace(u, items=[*u.items[:k], poisoned(u.items[k]), *u.items[k + 1:]])
                done = True
            new.append(u)
        out[d] = new
    return out


def _conflicting_resend(uploads: dict[Device, list[Upload]], rng: random.Random) -> dict[Device, list[Upload]]:
    """After its uploads, each device sends one IMU batch again: same event id, other samples."""
    out = {}
    for d, ups in uploads.items():
        imu = [i for u in ups for i in u.items if i.kind == "imu_batch"]
        out[d] = ups + ([Upload(d, [conflicting(imu[len(imu) // 2])])] if imu else [])
    return out


# The broker faults come last: on the local broker they can leave the workers unable to start
# (faust's own topics come back with the wrong partition count), which would blur every later row.
FAULTS: tuple[Fault, ...] = (
    Fault("database-restart", "PostgreSQL is stopped (fast shutdown) under load and started again",
          inject=_database_restart),
    Fault("worker-sigkill", "a worker is SIGKILLed under load; a replacement starts at once", inject=_worker_kill),
    Fault("gateway-restart", "the gateway is stopped (SIGTERM) under load and started again", inject=_gateway_restart),
    Fault("duplicate-storm", f"every request is sent {STORM_COPIES} times at once", shape=_storm),
    Fault("out-of-order", "one event per request, shuffled: ends before starts, batches in any order",
          shape=_out_of_order),
    Fault("poison-event", "a step interval with a NUL character in a string field; if refused, the device "
          "sends it without", shape=_poison),
    Fault("gzip-bomb", f"one device posts a gzip body inflating to {BOMB_MIB} MiB while the others upload",
          inject=_gzip_bomb, at=0.2),
    Fault("conflicting-resend", "an IMU batch resent with the same id and other samples", shape=_conflicting_resend),
    Fault("broker-restart", "the broker is stopped (SIGTERM) under load and started again empty; topics "
          "recreated as `rtm up` does", inject=_broker_restart),
    Fault("broker-crash", "the broker is killed (SIGKILL) under load and started again empty; topics recreated",
          inject=_broker_crash),
)
BY_NAME = {f.name: f for f in FAULTS}
