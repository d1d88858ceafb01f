"""Kafka clients configured the one way every part uses them.

`acks=all` always: "accepted" means durably in the broker. Idempotence only against real Kafka
(the development broker cannot InitProducerId; see RTM_KAFKA_IDEMPOTENT_PRODUCER).
"""

from __future__ import annotations

from typing import Any

import aiokafka.client
from aiokafka import AIOKafkaProducer
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


def make_producer(settings: Settings | None = None, **overrides: Any) -> AIOKafkaProducer:
    s = settings or get_settings()
    forbid_topic_auto_creation()
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
