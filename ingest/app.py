"""The gateway application: FastAPI with problem-details errors, a request id on every request,
log line and error, and the long-lived parts (database pool, Kafka producer) opened at startup."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import traceback
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from device_adapters.cloud import garmin, polar, withings
from device_adapters.cloud.connections import Connections
from device_adapters.cloud.polar import PolarClient
from device_adapters.cloud.settings import VendorSettings, get_vendor_settings
from ingest.auth import Authenticator
from ingest.log import configure_logging, request_id_var
from ingest.metrics import LATENCY, REJECTED, REQUESTS
from ingest.outbox import Relay
from ingest.problems import Problem, from_coded_error, from_http_status, problem_response, retry_after
from ingest.publisher import Publisher
from ingest.ratelimit import TokenBucketLimiter
from ingest.routes import (
    cloud_webhooks,
    eligibility,
    enrolment,
    events,
    health,
    hub,
    phone,
    vendor_webhooks,
    vendors,
    webhooks,
)
from ingest.settings import GatewaySettings, get_gateway_settings
from ingest.state import Gateway, gateway, request_id
from ingest.store import Store
from ingest.syncdb import SyncPools
from ingest.vendor_sync import CloudAdapter, VendorSyncer
from rtm import production
from rtm.errors import CodedError
from rtm.settings import Settings, get_settings

log = logging.getLogger("ingest.access")
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


class RequestContext:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path): request id from
    X-Request-ID (if sane) or a new one, echoed in the response; latency and status metrics;
    one access log line without the raw path (it may carry ids) or any body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        rid = supplied if _CLIENT_REQUEST_ID.match(supplied) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if not any(k == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            REQUESTS.labels(label, str(status)).inc()
            LATENCY.labels(label).observe(elapsed)
            log.info("%s %s %d %.1fms", scope["method"], label, status, elapsed * 1000)
            request_id_var.reset(token)


def install_error_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        REJECTED.labels(exc.code).inc()
        return problem_response(exc, request_id(request))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        problem = from_http_status(exc.status_code, str(exc.detail), exc.headers)
        REJECTED.labels(problem.code).inc()
        return problem_response(problem, request_id(request))

    async def on_coded(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CodedError)
        problem = from_coded_error(exc)
        REJECTED.labels(problem.code).inc()
        return problem_response(problem, request_id(request))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"pointer": "/" + "/".join(str(p) for p in e.get("loc", ())[1:]), "detail": str(e.get("msg"))}
            for e in exc.errors()[:50]
        ]
        REJECTED.labels("invalid-request").inc()
        return problem_response(
            Problem(422, "invalid-request", "the request does not match its schema", errors=errors),
            request_id(request),
        )

    async def on_database_down(request: Request, exc: Exception) -> Response:
        # No connection within the acquire timeout, or the connection broke: the database is down
        # or saturated. Nothing was accepted; the client resends after Retry-After.
        logging.getLogger("ingest.error").warning("database unavailable: %s", type(exc).__name__)
        REJECTED.labels("database-unavailable").inc()
        retry = gateway(request).config.retry_after_s
        return problem_response(
            Problem(503, "database-unavailable", "the database is unavailable or saturated; nothing was "
                    "accepted, resend after Retry-After", headers=retry_after(retry)),
            request_id(request),
        )

    async def on_error(request: Request, exc: Exception) -> Response:
        # The stack, not the message: a database or validation error's message can quote row values.
        stack = "".join(traceback.format_tb(exc.__traceback__))
        logging.getLogger("ingest.error").error("unhandled %s\n%s", type(exc).__name__, stack.rstrip())
        return problem_response(
            Problem(500, "internal-error", "an internal error occurred; quote the request id"),
            request_id(request),
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(CodedError, on_coded)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(PoolTimeout, on_database_down)
    app.add_exception_handler(psycopg.OperationalError, on_database_down)
    app.add_exception_handler(Exception, on_error)


def create_app(
    settings: Settings | None = None,
    config: GatewaySettings | None = None,
    polar_http: httpx.AsyncClient | None = None,
    vendor_config: VendorSettings | None = None,
) -> FastAPI:
    """Build the gateway. `polar_http` replaces the HTTP client used for Polar AccessLink."""
    s = settings or get_settings()
    cfg = config or get_gateway_settings()
    vcfg = vendor_config or get_vendor_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        production.check("gateway", s, cfg)
        store = await Store.open(s, max_size=cfg.db_pool_max, acquire_timeout_s=cfg.db_acquire_timeout_s)
        sync_db = await asyncio.to_thread(
            SyncPools.open, s, max(2, cfg.db_pool_max // 2), cfg.db_acquire_timeout_s
        )
        publisher = await Publisher.start(s, cfg.publish_timeout_s)
        relay = Relay(store.pool, publisher, s, cfg) if cfg.acceptance == "outbox" else None
        http = polar_http or httpx.AsyncClient()
        pepper = cfg.pepper_bytes(s.secrets_dir, s.environment)
        polar_client = PolarClient(
            http, cfg.polar_api_base, cfg.vendor_fetch_timeout_s, vcfg.polar_client_id,
            vcfg.polar_client_secret.get_secret_value() if vcfg.polar_client_secret else None,
        )
        adapters: dict[str, CloudAdapter] = {
            polar.VENDOR: polar.PolarAdapter(
                polar_client,
                polar.provider(vcfg.polar_client_id, vcfg.polar_client_secret.get_secret_value(),
                               vcfg.polar_authorize_url, vcfg.polar_token_url)
                if vcfg.polar_client_id and vcfg.polar_client_secret else None,
            ),
            **withings.adapters(http, vcfg, cfg.vendor_fetch_timeout_s),
            **garmin.adapters(http, vcfg, cfg.vendor_fetch_timeout_s),
        }
        adapters.update(cloud_webhooks.adapters(vcfg, http, cfg.vendor_fetch_timeout_s))
        syncer = VendorSyncer(
            vcfg, cfg, store, publisher, relay, Connections(store.pool, vcfg.cipher(s.secrets_dir)), adapters
        )
        app.state.gateway = Gateway(
            settings=s,
            config=cfg,
            store=store,
            publisher=publisher,
            auth=Authenticator(
                store,
                pepper,
                cfg.auth_cache_ttl_s,
                cfg.auth_negative_ttl_s,
                failures=TokenBucketLimiter(cfg.auth_failure_rate_per_s, cfg.auth_failure_burst),
                clinic_limit=TokenBucketLimiter(cfg.clinic_rate_per_s, cfg.clinic_burst),
            ),
            ip_limiter=TokenBucketLimiter(cfg.ip_rate_per_s, cfg.ip_burst),
            limiter=TokenBucketLimiter(cfg.rate_per_s, cfg.burst),
            pepper=pepper,
            polar=polar_client if cfg.polar_webhook_secret is not None else None,
            sync_db=sync_db,
            relay=relay,
            pairing_failures=TokenBucketLimiter(cfg.pairing_failure_rate_per_s, cfg.pairing_failure_burst),
            vendors=syncer,
        )
        if relay is not None:
            relay.start()
        syncer.start({**vendors.DAY_OF, **cloud_webhooks.DAY_OF})
        try:
            yield {}
        finally:
            await syncer.stop()
            if relay is not None:
                await relay.stop()
            await publisher.stop()
            await store.close()
            await asyncio.to_thread(sync_db.close)
            if polar_http is None:
                await http.aclose()

    app = FastAPI(
        title="RTM ingest gateway",
        version="1.0",
        description="Authenticated uploads from hubs, phones and vendor webhooks into Kafka; therapist time "
        "entries and billing summaries for clinics. "
        "Errors are RFC 9457 problem details (application/problem+json) with a stable `code`.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    routes = (events, phone, enrolment, eligibility, webhooks, cloud_webhooks, vendor_webhooks, vendors, health, hub)
    for module in routes:
        app.include_router(module.router)
    app.add_middleware(RequestContext)
    return app


def app_factory() -> FastAPI:
    """For `uvicorn --factory ingest.app:app_factory`."""
    configure_logging(get_gateway_settings().log_level)
    return create_app()
