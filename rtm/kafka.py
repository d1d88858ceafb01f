"""Kafka clients configured the one way every part uses them.

`acks=all` always: "accepted" means durably in the broker. Idempotence only against real Kafka
(the development broker cannot InitProducerId; see RTM_KAFKA_IDEMPOTENT_PRODUCER).
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from rtm.contract import Event, encode
from rtm.settings import Settings, get_settings


def make_producer(settings: Settings | None = None, **overrides: Any) -> AIOKafkaProducer:
    s = settings or get_settings()
    options: dict[str, Any] = {
        "bootstrap_servers": s.kafka_bootstrap,
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
