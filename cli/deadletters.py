"""`rtm deadletters summary|replay`: what the workers set aside, and putting it back once fixed.

A worker dead-letters a record it cannot store (it does not parse, the database refuses it, the
device does not own the session) with the reason and the original bytes, and moves on. Operators
need to see how much was set aside and why, and, once the cause is fixed (a missing patient row,
a bug), to send those records through again. Replay republishes each record's original key and
value to its source topic: storage is an upsert by event id, so a record that is stored meanwhile,
or replayed twice, is not counted twice; one that still fails is dead-lettered again.

Neither command prints a record's content or key (patient data): counts, reasons, topics, times.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer
from aiokafka import AIOKafkaConsumer, TopicPartition

from rtm import topics
from rtm.kafka import client_options, forbid_topic_auto_creation, make_producer
from rtm.settings import Settings, get_settings

# The topics the workers read: a letter can only have come from one of them.
REPLAYABLE = {t.name for t in (topics.RAW_IMU, topics.RAW_ACTIVITY, topics.RAW_SESSION, topics.RAW_TIMEZONE,
                               topics.DEVICE_ASSIGNMENT)}
app = typer.Typer(help="records the workers dead-lettered: summary, replay", no_args_is_help=True)


@dataclass(frozen=True)
class Letter:
    source_topic: str
    reason: str
    dead_at: str
    key: bytes
    value: bytes

    @classmethod
    def parse(cls, raw: bytes) -> Letter:
        d: dict[str, Any] = orjson.loads(raw)
        return cls(str(d["source_topic"]), str(d["reason"]), str(d.get("dead_at", "")),
                   base64.b64decode(d.get("key_b64", "")), base64.b64decode(d.get("value_b64", "")))


async def read_all(settings: Settings) -> list[Letter]:
    """Every dead letter in the topic, from its first retained record to its end now."""
    forbid_topic_auto_creation()
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False)
    try:
        await consumer.start()
        parts = [TopicPartition(topics.DEAD_LETTER.name, p) for p in range(topics.DEAD_LETTER.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        letters: list[Letter] = []
        pending = [tp for tp in parts if ends[tp] > 0]
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batch.items():
                letters += [Letter.parse(r.value) for r in records if r.offset < ends[tp] and r.value]
            pending = [tp for tp in pending if await consumer.position(tp) < ends[tp]]
        return letters
    finally:
        await consumer.stop()


def _after(dead_at: str, since: datetime) -> bool:
    try:
        at = datetime.fromisoformat(dead_at)
    except ValueError:  # a letter without a readable time is never excluded by one
        return True
    return at >= (since if since.tzinfo else since.replace(tzinfo=UTC))  # a bare time is UTC


def _chosen(letters: list[Letter], reason: str | None, source: str | None, since: datetime | None) -> list[Letter]:
    return [x for x in letters if (reason is None or x.reason == reason)
            and (source is None or x.source_topic == source)
            and (since is None or _after(x.dead_at, since))]


@app.command()
def summary(
    since: Annotated[datetime | None, typer.Option(help="only letters set aside from this UTC instant")] = None,
) -> None:
    """Dead letters by source topic and reason: how many, first and last."""
    letters = _chosen(asyncio.run(read_all(get_settings())), None, None, since)
    counts = Counter((x.source_topic, x.reason) for x in letters)
    typer.echo(f"{'source topic':28s} {'reason':28s} {'count':>7s}  first / last set aside (UTC)")
    for (source, reason), n in sorted(counts.items()):
        times = sorted(x.dead_at for x in letters if (x.source_topic, x.reason) == (source, reason))
        typer.echo(f"{source:28s} {reason:28s} {n:7d}  {times[0][:19]} / {times[-1][:19]}")
    typer.echo(f"{len(letters)} dead letters")


@app.command()
def replay(
    reason: Annotated[str, typer.Option(help="replay the letters of this reason (see `summary`)")],
    source_topic: Annotated[str | None, typer.Option(help="only those from this topic")] = None,
    since: Annotated[datetime | None, typer.Option(help="only letters set aside from this UTC instant")] = None,
    dry_run: Annotated[bool, typer.Option(help="count what would be replayed, send nothing")] = False,
) -> None:
    """Send the chosen letters' original records to their source topics again (after a fix)."""
    settings = get_settings()
    chosen = _chosen(asyncio.run(read_all(settings)), reason, source_topic, since)
    unknown = sorted({x.source_topic for x in chosen} - REPLAYABLE)
    if unknown:
        raise typer.BadParameter(f"letters name topics the workers do not read: {unknown}", param_hint="reason")
    if not dry_run and chosen:
        asyncio.run(_send(settings, chosen))
    typer.echo(f"{'would replay' if dry_run else 'replayed'} {len(chosen)} records "
               f"({', '.join(f'{t}: {n}' for t, n in sorted(Counter(x.source_topic for x in chosen).items()))})")


async def _send(settings: Settings, letters: list[Letter]) -> None:
    producer = make_producer(settings)
    try:
        await producer.start()
        sent = [await producer.send(x.source_topic, x.value, key=x.key or None) for x in letters]
        await asyncio.gather(*sent)  # every record acknowledged (acks=all) before we say so
    finally:
        await producer.stop()


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="deadletters")
