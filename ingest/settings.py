"""The gateway's own settings (RTM_GATEWAY_* environment variables); the shared ones (database,
broker, state folder) come from `rtm.settings.Settings`."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1 << 20


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RTM_GATEWAY_", extra="ignore")

    # Loopback on a development machine; 0.0.0.0 in a container (the image sets it), behind a proxy.
    host: str = "127.0.0.1"
    port: int = 8080

    # --- limits -----------------------------------------------------------------------------
    max_body_bytes: int = Field(default=16 * MIB, description="request body as sent (413 above)")
    # gzip bombs: the decompressed body is capped at what the largest acceptable batch holds, the
    # same as an uncompressed body (413 above); inflating stops there.
    max_decoded_bytes: int = Field(default=16 * MIB)
    # Bodies from this size on are inflated, parsed and validated in a worker thread, off the event loop.
    offload_bytes: int = 64 * 1024
    # Phone uploads with this many records on are validated in a worker thread (about 5 ms of work).
    offload_records: int = 200
    max_events_per_request: int = 5000
    # Devices' clocks drift: instants up to this far in the future (and before enrolment) pass.
    clock_skew_s: float = 300.0
    # Per-device token bucket: `rate_per_s` requests per second sustained, bursts up to `burst`.
    rate_per_s: float = 5.0
    burst: int = 60

    # Per clinic API key (clinic routes), and per client address on routes without a credential.
    clinic_rate_per_s: float = 20.0
    clinic_burst: int = 200
    ip_rate_per_s: float = 20.0
    ip_burst: int = 100
    # Failed authentications per client address before unknown tokens get 429 without a lookup.
    auth_failure_rate_per_s: float = 1.0
    auth_failure_burst: int = 20

    # --- authentication ---------------------------------------------------------------------
    # Key of the HMAC that turns token secrets into stored digests. Unset: a random one is made
    # once and kept in the state folder (local stack only); production must set it from a secret
    # store, the same for every replica (RTM_ENVIRONMENT=production refuses to start without it).
    pepper: SecretStr | None = None
    # How long a verified credential is trusted without asking the database again: the upper
    # bound on how late a revocation done on another gateway instance takes effect.
    auth_cache_ttl_s: float = 5.0
    # How long an id the database does not know is answered 401 without asking it again.
    auth_negative_ttl_s: float = 60.0

    # --- home hubs (pairing codes, health reports) ---------------------------------------------
    # A code is typed on the hub at hand-over or on the first call with the clinic: an hour is
    # enough, and a late one is simply reissued.
    pairing_code_ttl_s: float = 3600.0
    # Failed pairing attempts per client address: 5 at once, then one a minute. With 40-bit codes
    # that keeps guessing hopeless even from many addresses within a code's lifetime.
    pairing_failure_burst: int = 5
    pairing_failure_rate_per_s: float = 1 / 60
    # Health reports whose time is further than this ahead of the gateway's clock are refused.
    hub_report_max_ahead_s: float = 300.0

    # --- broker -----------------------------------------------------------------------------
    # Longest wait for the broker's acknowledgement before answering 503 (never accept and drop).
    publish_timeout_s: float = 5.0
    retry_after_s: int = 5

    # --- durable acceptance (see docs/ingest.md) ------------------------------------------------
    # "outbox": 2xx once the event and its dedup record are committed in PostgreSQL; a relay
    # publishes it until the sink has stored it (survives a broker that loses its topics, as the
    # local one does). "broker": 2xx once Kafka acknowledged (acks=all), for Apache Kafka with
    # replication 3, where an acknowledged write survives a broker restart.
    acceptance: Literal["outbox", "broker"] = "outbox"
    # An unstored row is published again this long after the last time, doubling up to the max:
    # longer than the pipeline's normal store latency (p99 about 1 s), short against a broker outage.
    outbox_republish_after_s: float = 30.0
    outbox_republish_max_s: float = 600.0
    # Back-off of the relay while the broker refuses publishes.
    outbox_failure_backoff_s: float = 0.5
    outbox_failure_backoff_max_s: float = 10.0
    outbox_batch: int = 500  # rows per claim and per fast-path publish
    outbox_poll_s: float = 0.5  # how often the retry path looks for due rows
    outbox_retention_s: float = 60.0  # stored rows kept this long (they hold whole IMU frames)
    outbox_prune_batch: int = 10_000
    outbox_stats_interval_s: float = 5.0  # depth metrics and pruning
    outbox_fast_queue_max: int = 20_000  # rows waiting for the fast path in memory; beyond: retry path
    # Acceptance answers 503 while this many events are unstored: the pipeline is not keeping up
    # (about 10 minutes of the ingest benchmark's load), and the outbox must not fill the disk.
    outbox_max_depth: int = 200_000
    # Longest wait for a database connection before answering 503 (the database is down or saturated).
    db_acquire_timeout_s: float = 0.5

    # --- vendor clouds ----------------------------------------------------------------------
    polar_webhook_secret: SecretStr | None = None
    polar_api_base: str = "https://www.polaraccesslink.com"
    vendor_fetch_timeout_s: float = 4.0

    db_pool_max: int = 8
    log_level: str = "info"

    def pepper_bytes(self, secrets_dir: Path, environment: str = "local") -> bytes:
        if self.pepper is not None and self.pepper.get_secret_value():
            return self.pepper.get_secret_value().encode()
        if environment == "production":  # a per-process pepper would break credentials across replicas
            raise RuntimeError("RTM_GATEWAY_PEPPER is not set (RTM_ENVIRONMENT=production)")
        return _local_pepper(secrets_dir)


def _local_pepper(secrets_dir: Path) -> bytes:
    path = secrets_dir / "gateway_pepper"
    if not path.exists():
        secrets_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


@lru_cache(maxsize=1)
def get_gateway_settings() -> GatewaySettings:
    return GatewaySettings()
