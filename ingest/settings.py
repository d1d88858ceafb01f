"""The gateway's own settings (RTM_GATEWAY_* environment variables); the shared ones (database,
broker, state folder) come from `rtm.settings.Settings`."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1 << 20


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RTM_GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080

    # --- limits -----------------------------------------------------------------------------
    max_body_bytes: int = Field(default=16 * MIB, description="request body as sent (413 above)")
    # gzip bombs: the decompressed body is capped too (413 above)
    max_decoded_bytes: int = Field(default=64 * MIB)
    max_events_per_request: int = 5000
    # Devices' clocks drift: instants up to this far in the future (and before enrolment) pass.
    clock_skew_s: float = 300.0
    # Per-device token bucket: `rate_per_s` requests per second sustained, bursts up to `burst`.
    rate_per_s: float = 5.0
    burst: int = 60

    # --- authentication ---------------------------------------------------------------------
    # Key of the HMAC that turns token secrets into stored digests. Unset: a random one is made
    # once and kept in the state folder (local stack); production sets it from a secret store.
    pepper: SecretStr | None = None
    # How long a verified credential is trusted without asking the database again: the upper
    # bound on how late a revocation done on another gateway instance takes effect.
    auth_cache_ttl_s: float = 5.0

    # --- broker -----------------------------------------------------------------------------
    # Longest wait for the broker's acknowledgement before answering 503 (never accept and drop).
    publish_timeout_s: float = 5.0
    retry_after_s: int = 5

    # --- vendor clouds ----------------------------------------------------------------------
    polar_webhook_secret: SecretStr | None = None
    polar_api_base: str = "https://www.polaraccesslink.com"
    vendor_fetch_timeout_s: float = 4.0

    db_pool_max: int = 8
    log_level: str = "info"

    def pepper_bytes(self, secrets_dir: Path) -> bytes:
        if self.pepper is not None:
            return self.pepper.get_secret_value().encode()
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
