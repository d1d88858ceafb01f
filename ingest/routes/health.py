"""Liveness, readiness and Prometheus metrics. They carry no patient data and are open to probes
and scrapers; production keeps them off the public listener (or in front of a network policy)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from ingest.problems import Problem
from ingest.state import gateway

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process serves requests")
async def healthz() -> Response:
    return Response(orjson.dumps({"status": "ok"}), media_type="application/json")


@router.get("/readyz", summary="Readiness: the database and the broker answer")
async def readyz(request: Request) -> Response:
    gw = gateway(request)
    gw.limit_address(request)  # it queries the database and the broker: not free to call
    checks: dict[str, str] = {}
    try:
        await gw.store.ping()
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready
        checks["database"] = type(exc).__name__
    checks["broker"] = "ok" if await gw.publisher.ping() else "unreachable"
    if any(v != "ok" for v in checks.values()):
        raise Problem(
            503,
            "not-ready",
            "a dependency is unavailable",
            headers={"Retry-After": "5"},
            extra={"checks": checks},
        )
    return Response(orjson.dumps({"status": "ready", "checks": checks}), media_type="application/json")


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
async def metrics(request: Request) -> Response:
    gateway(request).limit_address(request)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
