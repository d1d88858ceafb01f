"""Readiness, metrics and table views of this worker, on its web port."""

from __future__ import annotations

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from processors import metrics
from processors.agents.raw import last_seen
from processors.app import app, settings
from rtm import topics

SOURCE_TOPICS = {t.name for t in (topics.RAW_IMU, topics.RAW_ACTIVITY, topics.RAW_SESSION, topics.RAW_TIMEZONE,
                                  topics.DEVICE_ASSIGNMENT)}


@app.page("/ready/")
class ReadyView(View):
    """Joined its group and finished restoring its tables."""

    async def get(self, request: Request) -> Response:
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        ready = recovered and not app.rebalancing
        return self.json({"ready": ready, "recovered": recovered, "rebalancing": app.rebalancing},
                         status=200 if ready else 503)


@app.page("/metrics")
class MetricsView(View):
    async def get(self, request: Request) -> Response:
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/tables/device-last-seen/")
class LastSeenView(View):
    """The table as this worker holds it (its partitions only), for operators and tests."""

    async def get(self, request: Request) -> Response:
        return self.json({k: v for k, v in last_seen.items()})


@app.timer(interval=settings.lag_report_interval_s)
async def report_consumer_lag() -> None:
    """rtm_consumer_lag per assigned source partition: high-water mark (from fetch responses,
    right on every broker) minus the offset this worker has committed."""
    consumer = app.consumer
    committed = consumer._committed_offset  # type: ignore[attr-defined]  # faust has no public accessor
    for tp in consumer.assignment():
        if tp.topic not in SOURCE_TOPICS:
            continue
        high = consumer.highwater(tp)
        if high is None:
            continue
        done = committed.get(tp)
        next_offset = done + 1 if done is not None else 0
        metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, high - next_offset))
