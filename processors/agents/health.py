"""Readiness, metrics and table views of this worker, on its web port."""

from __future__ import annotations

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from processors import metrics
from processors.agents.raw import last_seen
from processors.app import app, settings
from processors.resilience import HEALTH, guarded
from rtm import topics

SOURCE_TOPICS = {t.name for t in (topics.RAW_IMU, topics.RAW_ACTIVITY, topics.RAW_SESSION, topics.RAW_TIMEZONE,
                                  topics.DEVICE_ASSIGNMENT)}


def _crashed() -> bool:
    """Crashed (a fatal error in faust) or stopping."""
    return bool(app.should_stop)


@app.page("/ready/")
class ReadyView(View):
    """Joined its group, restored its tables, and able to work: no dependency failing right now
    (a database or broker that is away shows here within one retry)."""

    async def get(self, request: Request) -> Response:
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        failing = dict(HEALTH.failing)
        ready = recovered and not app.rebalancing and not failing and not _crashed()
        return self.json({"ready": ready, "recovered": recovered, "rebalancing": app.rebalancing,
                          "failing": failing, "stopping": _crashed()},
                         status=200 if ready else 503)


@app.page("/live/")
class LiveView(View):
    """Alive: the event loop answers and the app has not crashed or begun stopping. A supervisor
    restarts a worker that fails this (a worker waiting for its database is alive, not ready)."""

    async def get(self, request: Request) -> Response:
        alive = not _crashed()
        return self.json({"alive": alive}, status=200 if alive else 503)


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
@guarded("lag-report", settings.retry_max_backoff_s)
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
        metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag(high, committed.get(tp)))


def lag(high: int, committed: int | None) -> int:
    """Records not yet acknowledged. faust keeps the committed offset the way Kafka does, as the next
    offset to read (`Consumer._new_offset` returns the last acked + 1), so no + 1 here: with it, one
    record waiting showed as none. Nothing committed yet: the whole partition waits."""
    return max(0, high - (committed or 0))
