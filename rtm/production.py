"""Production mode (`RTM_ENVIRONMENT=production`): each component refuses to start unless every
setting whose local default is unsafe beyond one laptop was set explicitly, and every secret is.

The local stack generates its passwords and the gateway's pepper into the state folder; in
production nothing is generated: a pepper made up per process would break every credential across
replicas and restarts, and a default host or broker flavour would point at nothing. The same lists
are what the deployment files must set (tests/test_production.py reads them against compose and
the Kubernetes manifests).
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic_settings import BaseSettings

from rtm.settings import Settings

log = logging.getLogger(__name__)

Component = Literal["gateway", "worker", "migrate", "topics"]

# Local defaults that point at the development stack (127.0.0.1, the embedded broker's workarounds).
_WHERE = ("RTM_PG_HOST", "RTM_KAFKA_BOOTSTRAP", "RTM_BROKER_FLAVOUR")
REQUIRED: dict[Component, tuple[str, ...]] = {
    # The gateway writes as the writer and serves the clinics' billing reads as the reader.
    "gateway": (*_WHERE, "RTM_PG_WRITER_PASSWORD", "RTM_PG_READER_PASSWORD", "RTM_GATEWAY_PEPPER",
                "RTM_GATEWAY_HOST", "RTM_KAFKA_IDEMPOTENT_PRODUCER"),
    "worker": (*_WHERE, "RTM_PG_WRITER_PASSWORD", "RTM_TOPIC_REPLICATION", "RTM_KAFKA_IDEMPOTENT_PRODUCER",
               "RTM_WORKER_WEB_HOST"),
    "migrate": ("RTM_PG_HOST", "RTM_PG_ADMIN_PASSWORD", "RTM_PG_OWNER_PASSWORD", "RTM_PG_WRITER_PASSWORD",
                "RTM_PG_READER_PASSWORD", "RTM_PG_APP_PASSWORD"),
    "topics": (*_WHERE, "RTM_TOPIC_REPLICATION"),
}
COMMANDS: dict[Component, str] = {
    "gateway": "rtm gateway",
    "worker": "rtm worker",
    "migrate": "rtm provision database",
    "topics": "rtm provision topics",
}
# Secrets and their shortest acceptable length: a guessable one is as bad as none.
SECRET_MIN_LENGTH = {
    "RTM_PG_ADMIN_PASSWORD": 16,
    "RTM_PG_OWNER_PASSWORD": 16,
    "RTM_PG_WRITER_PASSWORD": 16,
    "RTM_PG_READER_PASSWORD": 16,
    "RTM_PG_APP_PASSWORD": 16,
    "RTM_GATEWAY_PEPPER": 32,  # an HMAC-SHA256 key: at least 256 bits of base64/hex text
}


class ProductionConfigError(RuntimeError):
    """Production mode is missing settings; the message names every one."""


def _value(name: str, settings: Settings, gateway: BaseSettings | None) -> tuple[bool, object]:
    """Whether `name` was set explicitly (environment, or an override), and its value."""
    model: BaseSettings | None = gateway if name.startswith("RTM_GATEWAY_") else settings
    if model is None:
        raise ValueError(f"checking {name} needs the gateway's settings")
    prefix = model.model_config.get("env_prefix", "")
    field = name.removeprefix(prefix).lower()
    if field not in type(model).model_fields:
        raise KeyError(f"{name} is not a setting of {type(model).__name__}")
    value = getattr(model, field)
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    return field in model.model_fields_set and value not in (None, ""), value


def problems(component: Component, settings: Settings, gateway: BaseSettings | None = None) -> list[str]:
    """What stops `component` from starting in production (empty: nothing, or not production)."""
    if settings.environment != "production":
        return []
    found = []
    for name in REQUIRED[component]:
        is_set, value = _value(name, settings, gateway)
        if not is_set:
            found.append(f"{name} is not set")
        elif name in SECRET_MIN_LENGTH and len(str(value)) < SECRET_MIN_LENGTH[name]:
            found.append(f"{name} is shorter than {SECRET_MIN_LENGTH[name]} characters")
    if "RTM_BROKER_FLAVOUR" in REQUIRED[component] and settings.broker_flavour != "kafka":
        found.append("RTM_BROKER_FLAVOUR must be 'kafka' (the 'tansu' workarounds are for the development broker)")
    return found


def check(component: Component, settings: Settings, gateway: BaseSettings | None = None) -> None:
    """Raise naming every missing setting; warn about plaintext links to the database and broker."""
    found = problems(component, settings, gateway)
    if found:
        raise ProductionConfigError(
            f"{COMMANDS[component]} refuses to start in production (RTM_ENVIRONMENT=production): " + "; ".join(found)
        )
    if settings.environment == "production":
        if settings.pg_sslmode not in ("verify-ca", "verify-full"):
            log.warning("RTM_PG_SSLMODE=%s: the database's certificate is not verified", settings.pg_sslmode)
        if component != "migrate" and settings.kafka_security_protocol != "SSL":
            log.warning("RTM_KAFKA_SECURITY_PROTOCOL=PLAINTEXT: keep the brokers on a private network")
