"""Settings of the vendor-cloud adapters (RTM_VENDOR_* environment variables)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from device_adapters.cloud.crypto import TokenCipher, local_key_spec


class VendorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RTM_VENDOR_", extra="ignore")

    # "kid:base64url-key,..." (first encrypts); unset: generated keys in the state folder's secrets.
    token_keys: SecretStr | None = None
    # Where vendors send the patient's browser back after consent (the gateway's callback route).
    redirect_base: str = "http://127.0.0.1:8080"
    # An authorization link stays usable this long (it is sent to the patient, who may open it later).
    oauth_state_ttl_s: float = 24 * 3600
    # Refresh an access token this long before it expires, so no sync starts with a dying token.
    refresh_margin_s: float = 300.0
    # Webhook replay window: a notification whose timestamp is older (or further ahead) is refused;
    # inside it, notification ids are deduplicated. Missed notifications are caught by backfill.
    webhook_window_s: float = 24 * 3600
    # Notification processing: attempts before it is marked failed (the next backfill covers it).
    notification_max_attempts: int = 8
    notification_backoff_s: float = 2.0
    notification_backoff_max_s: float = 600.0
    # Queue poll of the vendor syncer (notifications queued by this gateway wake it at once).
    syncer_poll_s: float = 2.0
    # How far back a first sync reaches (never before the device's enrolment).
    backfill_days: int = 28
    # Per vendor user: requests per second sustained and burst, below the vendors' own limits.
    user_rate_per_s: float = 1.0
    user_burst: int = 60

    # --- Polar AccessLink ----------------------------------------------------------------------
    polar_client_id: str | None = None
    polar_client_secret: SecretStr | None = None
    polar_authorize_url: str = "https://flow.polar.com/oauth2/authorization"
    polar_token_url: str = "https://polarremote.com/v2/oauth2/token"

    # Google Health API v4 and Oura API v2: what a vendor may still revise after its day ended
    # (a tracker that syncs late) is re-read on every sync of the connection, this many days back.
    revision_days: int = 3

    # --- Google Health API v4 ------------------------------------------------------------------
    google_health_client_id: str | None = None
    google_health_client_secret: SecretStr | None = None
    google_health_authorize_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_health_token_url: str = "https://oauth2.googleapis.com/token"
    google_health_api_base: str = "https://health.googleapis.com"
    # The subscriber's endpoint secret (sent back verbatim as the Authorization header).
    google_health_webhook_secret: SecretStr | None = None

    # --- Oura API v2 ---------------------------------------------------------------------------
    oura_client_id: str | None = None
    oura_client_secret: SecretStr | None = None
    oura_authorize_url: str = "https://cloud.ouraring.com/oauth/authorize"
    oura_token_url: str = "https://api.ouraring.com/oauth/token"
    oura_api_base: str = "https://api.ouraring.com"
    # Ours, given to Oura at subscription; Oura's handshake GET must present it.
    oura_verification_token: SecretStr | None = None

    # --- Withings and Garmin Health API ---------------------------------------------------------
    # The gateway's public base for vendor notifications (unset: redirect_base).
    webhook_base: str | None = None
    withings_client_id: str | None = None
    withings_client_secret: SecretStr | None = None
    withings_authorize_url: str = "https://account.withings.com/oauth2_user/authorize2"
    withings_token_url: str = "https://wbsapi.withings.net/v2/oauth2"
    withings_api_base: str = "https://wbsapi.withings.net"
    garmin_client_id: str | None = None
    garmin_client_secret: SecretStr | None = None
    garmin_authorize_url: str = "https://connect.garmin.com/oauth2Confirm"
    garmin_token_url: str = "https://diauth.garmin.com/di-oauth2-service/oauth/token"
    garmin_api_base: str = "https://apis.garmin.com"
    # Garmin signs nothing: the endpoint configured at Garmin carries this secret in its path.
    garmin_webhook_secret: SecretStr | None = None
    # Epochs and dailies count the same steps: one feeds them (epochs: 15-minute detail).
    garmin_steps_from: Literal["epochs", "dailies"] = "epochs"

    def cipher(self, secrets_dir: Path) -> TokenCipher:
        spec = self.token_keys.get_secret_value() if self.token_keys else local_key_spec(secrets_dir)
        return TokenCipher.from_spec(spec)


@lru_cache(maxsize=1)
def get_vendor_settings() -> VendorSettings:
    return VendorSettings()
