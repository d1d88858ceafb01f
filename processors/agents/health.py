"""Readiness of this worker: joined its group and finished restoring its tables."""

from __future__ import annotations

from faust.web import Request, Response, View

from processors.app import app


@app.page("/ready/")
class ReadyView(View):
    async def get(self, request: Request) -> Response:
        recovered = app.tables.recovery.completed.is_set()
        ready = recovered and not app.rebalancing
        return self.json({"ready": ready, "recovered": recovered, "rebalancing": app.rebalancing},
                         status=200 if ready else 503)
