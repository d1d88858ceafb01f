"""The topic guard: a worker notices that the broker lost its topics (the development broker keeps
them in memory, so a restart loses all of them and every consumer group's offsets), creates them
again with their partition counts and restarts itself, so that it consumes only from topics that
are right. No client of ours creates a topic by naming it (`rtm.kafka.forbid_topic_auto_creation`),
so nothing can come back with the broker's default partition count in the meantime."""

from __future__ import annotations

import logging
import os
import signal

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import TP

from processors.app import app, settings
from processors.kafka.tansu import fetch_highwaters
from processors.resilience import HEALTH, guarded, retry
from rtm.kafka import client_options
from rtm.stack.broker import ensure_topics, partition_counts
from rtm.topics import group_topics

log = logging.getLogger(__name__)
RESTART_EXIT_CODE = 75  # EX_TEMPFAIL: restart me
restart_requested = False


async def _wrong_topics() -> list[str]:
    wanted = group_topics(settings.app_id)
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=5000)
    await admin.start()
    try:
        counts = await partition_counts(admin, [t.name for t in wanted])
    finally:
        await admin.close()
    return [f"{t.name} ({counts.get(t.name, 'missing')})" for t in wanted if counts.get(t.name) != t.partitions]


async def _lost_logs() -> list[TP]:
    """Partitions whose log now ends before the offset this worker has read up to: the broker lost
    the log (restarted empty and its topics recreated by someone else before the check above could
    see them missing; or an unclean leader election). faust drops every message below the read
    offset it remembers, so the events the gateway's relay publishes again would be skipped: only a
    restart (in the same group) reads them."""
    read: dict[TP, int | None] = getattr(app.consumer, "_read_offset", {})  # faust has no public view
    assigned = app.consumer.assignment()
    offsets = {tp: off for tp, off in read.items() if off is not None and tp in assigned}
    if not offsets:
        return []
    marks = await fetch_highwaters(settings.kafka_bootstrap,
                                   [TopicPartition(tp.topic, tp.partition) for tp in offsets])
    # The read offset is the last message read (or, right after an assignment, the committed offset:
    # the next one to read), and the high-water mark the offset the next message gets: a log that is
    # whole ends at or after it.
    return [tp for tp, off in offsets.items() if marks.get(TopicPartition(tp.topic, tp.partition), off) < off]


@app.timer(interval=settings.topic_check_interval_s)
@guarded("topic-guard", settings.retry_max_backoff_s)
async def guard_topics() -> None:
    global restart_requested
    if restart_requested:
        return
    wrong = await retry("broker", _wrong_topics, settings.retry_max_backoff_s)
    if not wrong:
        lost = await retry("broker", _lost_logs, settings.retry_max_backoff_s)
        if lost:
            restart_requested = True
            log.error("the broker lost logs this worker had read (%s): restarting to read them afresh",
                      ", ".join(f"{tp.topic}[{tp.partition}]" for tp in lost))
            HEALTH.failing["topics"] = "the broker lost its logs; restarting"
            os.kill(os.getpid(), signal.SIGTERM)
        return
    if settings.broker_flavour != "tansu" and any("missing" not in w for w in wrong):
        # On Apache Kafka a topic is never lost by a restart, and one whose partition count changed
        # is an operator's decision to undo, not the worker's: say so and keep running.
        HEALTH.failing["topics"] = "wrong partition counts: " + ", ".join(wrong)
        return
    restart_requested = True
    log.error("the broker lost or changed topics of this group (%s): recreating them and restarting",
              ", ".join(wrong))
    created = await retry("broker", lambda: ensure_topics(settings, repair=True), settings.retry_max_backoff_s)
    log.error("created %s; restarting to consume from them afresh", ", ".join(created) or "nothing")
    HEALTH.failing["topics"] = "the broker lost its topics; restarting"
    os.kill(os.getpid(), signal.SIGTERM)
