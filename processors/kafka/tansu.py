"""Workaround for the embedded development broker (Tansu 0.6.0), used only against it.

Tansu's ListOffsets answer for the latest offset is often too low, while the high-water mark in
its fetch responses is right. Faust sizes table recovery by `highwaters()` (ListOffsets), so
against Tansu it stops reading a changelog early and silently loses table updates. This transport
(broker URL scheme `tansu://`, registered as a faust transport entry point) takes high-water marks
from fetch responses instead. Against Apache Kafka the stock `kafka://` transport is used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

FETCH_TIMEOUT_S = 15.0


async def fetch_highwaters(
    bootstrap: str | list[str], partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """High-water mark of each partition, as reported by a fetch response (not ListOffsets)."""
    tps = list(partitions)
    if not tps:
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, fetch_max_bytes=1 << 20,
        max_partition_fetch_bytes=1 << 16,
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        # Fetch from the earliest offset: every fetch response carries the partition's high-water
        # mark, including an empty partition's (0).
        await consumer.seek_to_beginning(*tps)
        deadline = asyncio.get_running_loop().time() + FETCH_TIMEOUT_S
        marks: dict[TopicPartition, int] = {}
        while len(marks) < len(tps):
            await consumer.getmany(*[tp for tp in tps if tp not in marks], timeout_ms=100, max_records=1)
            for tp in tps:
                hw = consumer.highwater(tp)
                if hw is not None:
                    marks[tp] = hw
            if asyncio.get_running_loop().time() > deadline:
                missing = [f"{tp.topic}[{tp.partition}]" for tp in tps if tp not in marks]
                raise TimeoutError(f"no fetch response with a high-water mark for {missing}")
        return marks
    finally:
        await consumer.stop()


class TansuConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        if self.consumer.in_transaction:
            return await super()._highwaters(partitions)
        servers = faust_aiokafka.server_list(self.transport.url, self.transport.default_port)  # type: ignore[attr-defined]
        marks = await fetch_highwaters(servers, [TopicPartition(tp.topic, tp.partition) for tp in partitions])
        return {TP(tp.topic, tp.partition): hw for tp, hw in marks.items()}


class TansuConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return TansuConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """faust transport for `tansu://host:port` broker URLs."""

    Consumer = TansuConsumer
    driver_version = f"tansu-compat/{faust_aiokafka.Transport.driver_version}"
