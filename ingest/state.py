"""The gateway's long-lived parts, built at startup and shared by every request."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from device_adapters.cloud.polar import PolarClient
from ingest.auth import Authenticator
from ingest.enrolment import Emitter
from ingest.outbox import Relay
from ingest.problems import Problem, retry_after
from ingest.publisher import Publisher
from ingest.ratelimit import TokenBucketLimiter
from ingest.settings import GatewaySettings
from ingest.store import Store
from ingest.syncdb import SyncPools
from ingest.vendor_sync import VendorSyncer
from rtm.settings import Settings


@dataclass
class Gateway:
    settings: Settings
    config: GatewaySettings
    store: Store
    publisher: Publisher
    auth: Authenticator
    limiter: TokenBucketLimiter
    pepper: bytes
    polar: PolarClient | None
    sync_db: SyncPools
    ip_limiter: TokenBucketLimiter | None = None  # routes without a credential, per client address
    relay: Relay | None = None  # None: acceptance by broker acknowledgement (settings.acceptance)
    pairing_failures: TokenBucketLimiter | None = None  # failed pairing attempts, per client address
    vendors: VendorSyncer | None = None  # vendor-cloud connections (device_adapters/cloud)

    def emitter(self) -> Emitter:
        return Emitter(
            self.publisher, self.relay is not None, self.relay, self.config.outbox_republish_after_s
        )

    def limit_address(self, request: Request) -> None:
        """Per-address limit for routes that carry no credential (probes, docs, webhooks)."""
        if self.ip_limiter is None:
            return
        wait = self.ip_limiter.acquire(request.client.host if request.client is not None else "-")
        if wait > 0:
            raise Problem(
                429, "rate-limited", "too many requests from this address; slow down",
                headers=retry_after(wait), extra={"retry_after_s": round(wait, 3)},
            )

    def rate_limit(self, key: str) -> None:
        wait = self.limiter.acquire(key)
        if wait > 0:
            raise Problem(
                429,
                "rate-limited",
                "this device sends faster than its limit; slow down",
                headers=retry_after(wait),
                extra={"retry_after_s": round(wait, 3)},
            )


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "-"))
