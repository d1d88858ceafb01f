"""Kafka clients configured the one way every part uses them.

`acks=all` always: "accepted" means durably in the broker. Idempotence only against real Kafka
(the development broker cannot InitProducerId; see RTM_KAFKA_IDEMPOTENT_PRODUCER).
"""

from __future__ import annotations

import ssl
from typing import Any

import aiokafka.client
from aiokafka import AIOKafkaProducer
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest

from rtm.contract import Event, encode
from rtm.settings import Settings, get_settings


class _NoAutoCreateMetadataRequest(MetadataRequest):  # type: ignore[misc]
    def __init__(self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = False) -> None:
        super().__init__(topics, allow_auto_topic_creation)


def forbid_topic_auto_creation() -> None:
    """Make this process's Kafka clients ask the broker never to create a topic they name.

    A broker that creates topics on first use gives them its default partition count (4 on the
    development broker, which loses every topic when it restarts): a producer or consumer that
    reconnected first would create the IMU topic or a table's changelog with the wrong count, and
    the workers would crash on it. aiokafka has no option for this, so the flag of its metadata
    requests is set here (Apache Kafka in production has auto-creation off on the broker side)."""
    aiokafka.client.MetadataRequest = _NoAutoCreateMetadataRequest


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for the brokers (RTM_KAFKA_SECURITY_PROTOCOL=SSL), or None for plaintext."""
    if settings.kafka_security_protocol != "SSL":
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
        keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
    )
    return context


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options every aiokafka client of ours takes (producer, consumer, admin)."""
    context = tls_context(settings)
    if context is None:
        return {"bootstrap_servers": settings.kafka_bootstrap}
    return {"bootstrap_servers": settings.kafka_bootstrap, "security_protocol": "SSL", "ssl_context": context}


def make_producer(settings: Settings | None = None, **overrides: Any) -> AIOKafkaProducer:
    s = settings or get_settings()
    forbid_topic_auto_creation()
    options: dict[str, Any] = {
        **client_options(s),
        "acks": "all",
        "enable_idempotence": s.kafka_idempotent_producer,
        "linger_ms": 5,
        "max_batch_size": 1 << 20,
        "max_request_size": 8 << 20,
        "request_timeout_ms": 10000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def send_event(producer: AIOKafkaProducer, topic: str, event: Event) -> None:
    """Send one event keyed by patient and wait for the broker's acknowledgement."""
    await producer.send_and_wait(topic, encode(event), key=event.key())
