"""Readiness, metrics and table views of this worker, on its web port."""

from __future__ import annotations

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from processors.agents.raw import last_seen
from processors.app import app


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
