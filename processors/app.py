"""The faust application: one per worker process; agents live in processors/agents/."""

from __future__ import annotations

import faust

from rtm.settings import Settings, get_settings
from rtm.topics import ALL_TOPICS, TopicSpec


def broker_url(settings: Settings) -> str:
    # `tansu://` selects the transport that works around the development broker's ListOffsets.
    scheme = "tansu" if settings.broker_flavour == "tansu" else "kafka"
    return f"{scheme}://{settings.kafka_bootstrap}"


def create_app(settings: Settings) -> faust.App:
    (settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    return faust.App(
        settings.app_id,
        broker=broker_url(settings),
        # Tables hold only small state rebuilt from their changelogs; billing-critical counts live
        # in the database (architecture rule 2).
        store="memory://",
        # faust writes a small "{id}-data" folder; keep it with the rest of the local state, not in
        # whatever directory the worker was started from.
        datadir=str(settings.state_dir / "faust" / settings.app_id),
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
