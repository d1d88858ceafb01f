"""Publishing to Kafka with the gateway's one promise: an event counts as accepted only once the
broker has acknowledged it with acks=all. Each send is awaited individually so that, when the
broker fails halfway through a batch, the gateway knows exactly which events made it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from rtm.kafka import make_producer
from rtm.settings import Settings

log = logging.getLogger("ingest.publisher")


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes
    value: bytes


class Publisher:
    def __init__(self, producer: AIOKafkaProducer, timeout_s: float) -> None:
        self.producer = producer
        self.timeout_s = timeout_s
        # Offsets only grow in a partition's log: an acknowledged offset below one acknowledged
        # before means the broker lost that log (the local broker restarted empty, or an unclean
        # leader election truncated it), and with it events it had acknowledged.
        self._high: dict[tuple[str, int], int] = {}
        self._log_lost = False

    @classmethod
    async def start(cls, settings: Settings, timeout_s: float) -> Publisher:
        # The request timeout bounds how long a send may hang on a dead broker; the gateway's own
        # deadline (timeout_s) is what the client waits at most.
        producer = make_producer(
            settings, request_timeout_ms=max(1000, int(timeout_s * 1000)), metadata_max_age_ms=30000
        )
        await producer.start()
        return cls(producer, timeout_s)

    async def stop(self) -> None:
        try:
            await asyncio.wait_for(self.producer.stop(), timeout=self.timeout_s + 1)
        except (TimeoutError, KafkaError):
            log.warning("producer did not stop cleanly")

    async def publish(self, messages: Sequence[Outgoing]) -> list[bool]:
        """Send all; return, per message, whether the broker acknowledged it within the deadline."""
        if not messages:
            return []
        tasks = [asyncio.ensure_future(self._send(m)) for m in messages]
        done, pending = await asyncio.wait(tasks, timeout=self.timeout_s)
        for t in pending:
            t.cancel()
        acked = [
            t in done and not t.cancelled() and t.exception() is None and bool(t.result()) for t in tasks
        ]
        failed = len(acked) - sum(acked)
        if failed:
            log.warning("broker acknowledged %d of %d events", len(acked) - failed, len(acked))
        return acked

    def take_log_lost(self) -> bool:
        """Whether a partition's log was lost since the last call (see __init__)."""
        lost, self._log_lost = self._log_lost, False
        return lost

    async def _send(self, m: Outgoing) -> bool:
        try:
            fut = await self.producer.send(m.topic, m.value, key=m.key)
            meta = await fut
            where = (meta.topic, meta.partition)
            if meta.offset < self._high.get(where, -1):
                log.warning("partition %s-%d restarted at offset %d: the broker lost its log", *where, meta.offset)
                self._log_lost = True
                self._high[where] = meta.offset
            else:
                self._high[where] = max(meta.offset, self._high.get(where, -1))
            return True
        except KafkaError as exc:
            log.warning("publish failed: %s", type(exc).__name__)
            return False

    async def ping(self) -> bool:
        try:
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(), timeout=0.8)  # probes wait 1 s
            return True
        except (TimeoutError, KafkaError, OSError):
            return False
