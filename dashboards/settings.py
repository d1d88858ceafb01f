"""Settings of the clinic web app (environment variables RTM_APP_*, local defaults)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class AppSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RTM_APP_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    # Sessions: an idle session ends after this long (a shared clinic tablet must not stay signed in).
    session_idle_minutes: int = 30
    session_max_hours: int = 12
    # Lock-out: this many failed sign-ins in a row lock the account for lockout_minutes
    # (NIST SP 800-63B 5.2.2 allows up to 100; a clinic's staff list is small, so we stay strict).
    lockout_failures: int = 5
    lockout_minutes: int = 15
    # Cookies are Secure (HTTPS only) behind TLS; the local stack serves plain HTTP on loopback.
    secure_cookies: bool = False
    # Pairing codes are short, so they live briefly (the gateway also rate-limits redemption).
    pairing_code_minutes: int = 30
    # A device with no sync for this many days shows as silent on the queue and the patient page.
    silent_device_days: int = 3
    snooze_default_hours: int = 24
    # The patient page's trends reach this far back.
    trend_days: int = 90
    pool_max: int = 8
    # Alerts (dashboards/alerts.py). Links in alerts point here; the app's address as clinics see it.
    public_url: str = "http://127.0.0.1:8000"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "rtm-alerts@localhost"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    # A failed send waits alert_retry_base_s * 2^(attempt-1), capped at alert_retry_max_s (one hour:
    # a receiver down for a night still gets the alert in the morning), and gives up after
    # alert_max_attempts (about a day with these values).
    alert_retry_base_s: float = 30.0
    alert_retry_max_s: float = 3600.0
    alert_max_attempts: int = 30
    alert_timeout_s: float = 10.0
    # The dispatcher's round: webhooks go out within this; the e-mail digest gathers a round's flags.
    alert_interval_s: float = 60.0
    # Optional OpenID Connect sign-in (one identity provider, serving one clinic): off unless the
    # discovery URL is set. The client secret comes from the environment, never from a file in the repo.
    oidc_discovery_url: str | None = None  # e.g. https://idp.example.org/.well-known/openid-configuration
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_clinic: str | None = None  # the clinic whose staff sign in at this provider
    oidc_redirect_url: str | None = None  # default: http://{host}:{port}/login/oidc/callback
    oidc_label: str = "your organisation"
    # An identity that matches no staff account is refused, unless the admin configures this role:
    # then a biller account is created (clinical roles need an NPI and discipline, which an ID token lacks).
    oidc_auto_create_role: Literal["biller"] | None = None
    # A sign-in started at the provider must come back within this long (state, nonce, PKCE verifier).
    oidc_login_minutes: int = 10

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_discovery_url and self.oidc_client_id and self.oidc_clinic)

    def oidc_redirect(self) -> str:
        return self.oidc_redirect_url or f"http://{self.host}:{self.port}/login/oidc/callback"


@lru_cache(maxsize=1)
def get_app_settings() -> AppSettings:
    return AppSettings()
