"""Liveness, readiness and Prometheus metrics. They carry no patient data and are open to probes
and scrapers; production keeps them off the public listener (or in front of a network policy)."""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from ingest.multiproc import registry
from ingest.problems import Problem
from ingest.state import gateway

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process serves requests")
async def healthz() -> Response:
    return Response(orjson.dumps({"status": "ok"}), media_type="application/json")


@router.get("/readyz", summary="Readiness: the gateway can accept (database; broker too in the broker mode)")
async def readyz(request: Request) -> Response:
    gw = gateway(request)
    gw.limit_address(request)  # it queries the database and the broker: not free to call

    async def database() -> str:
        try:
            await gw.store.ping()
            return "ok"
        except Exception as exc:  # any failure means not ready
            return type(exc).__name__

    db, broker = await asyncio.gather(database(), gw.publisher.ping())
    checks = {"database": db, "broker": "ok" if broker else "unreachable"}
    # With the outbox, a broker that is away delays relaying, not acceptance: still ready.
    required = ("database",) if gw.relay is not None else ("database", "broker")
    if any(checks[k] != "ok" for k in required):
        raise Problem(
            503,
            "not-ready",
            "a dependency is unavailable",
            headers={"Retry-After": str(gw.config.retry_after_s)},
            extra={"checks": checks},
        )
    return Response(orjson.dumps({"status": "ready", "checks": checks}), media_type="application/json")


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
async def metrics(request: Request) -> Response:
    gateway(request).limit_address(request)
    return Response(generate_latest(registry()), media_type=CONTENT_TYPE_LATEST)
