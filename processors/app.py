"""The faust application: one per worker process; agents live in processors/agents/."""

from __future__ import annotations

from typing import Any

import faust

from rtm.kafka import tls_context
from rtm.settings import Settings, get_settings
from rtm.topics import ALL_TOPICS, TopicSpec


def broker_url(settings: Settings) -> str:
    # `tansu://` selects the transport that works around the development broker's ListOffsets.
    scheme = "tansu" if settings.broker_flavour == "tansu" else "kafka"
    return f"{scheme}://{settings.kafka_bootstrap}"


def create_app(settings: Settings) -> faust.App:
    context = tls_context(settings)
    # Only with TLS: the plaintext configuration stays exactly faust's default.
    tls: dict[str, Any] = {"broker_credentials": faust.SSLCredentials(context)} if context is not None else {}
    return faust.App(
        settings.app_id,
        broker=broker_url(settings),
        **tls,
        # Tables hold only small state rebuilt from their changelogs; billing-critical counts live
        # in the database (docs/architecture.md, rule 2).
        store="memory://",
        # faust's "{id}-data" folder stays in the working directory (the image's is its state
        # folder): with it in the state folder the worker-sigkill fault of `rtm faults` left
        # acknowledged events unstored. Most likely that was the replacement's slow start-up
        # outlasting the harness's quiet window, not lost data (docs/faults.md, "A killed worker");
        # the folder has not been moved back to check.
        value_serializer="raw",
        key_serializer="raw",
        processing_guarantee="at_least_once",
        producer_acks=-1,
        broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_ms / 1000,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=settings.topic_replication,
        topic_partitions=4,
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        web_in_thread=False,
        table_cleanup_interval=60.0,
    )


settings = get_settings()
app = create_app(settings)


def topic(spec: TopicSpec) -> faust.TopicT:
    return app.topic(spec.name, partitions=spec.partitions, internal=False)


TOPICS = {spec.name: topic(spec) for spec in ALL_TOPICS}
