"""The analysis loop: queued IMU recordings -> sets, reps and ROM -> results topic."""

from __future__ import annotations

import time

import orjson

from processors import metrics
from processors.agents.common import sink
from processors.app import TOPICS, app, settings
from processors.assembly import StreamOutcome, analyse_stream, claim_stream
from processors.sink.postgres import Conn
from rtm import topics


def _analyse_one(conn: Conn) -> StreamOutcome | None:
    key = claim_stream(conn, settings.analysis_quiet_s)
    if key is None:
        return None
    return analyse_stream(conn, key, settings.session_margin_s, settings.max_session_s)


@app.timer(interval=settings.analysis_poll_s)
async def analyse_quiet_recordings() -> None:
    deadline = time.monotonic() + settings.analysis_budget_s
    while time.monotonic() < deadline:
        outcome = await sink.run_async("analysis", _analyse_one)
        if outcome is None:
            return
        metrics.STREAMS_ANALYSED.labels(outcome.status).inc()
        metrics.ANALYSIS_SAMPLES.inc(outcome.samples)
        await TOPICS[topics.RESULTS_REPS.name].send(
            key=outcome.key.patient_id.encode(), value=orjson.dumps(outcome.as_result())
        )
        metrics.EVENTS_OUT.labels(topics.RESULTS_REPS.name).inc()
