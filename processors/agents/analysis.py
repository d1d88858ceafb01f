"""Timers of the worker: queued IMU recordings -> sets, reps and ROM (-> results topic and trend
flags); therapist flags that need time to pass; eligibility of patients whose facts changed."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import orjson
import psycopg

from eligibility.store import recompute_dirty
from flags import evaluate_all, evaluate_patients
from processors import metrics
from processors.agents.common import sink
from processors.app import TOPICS, app, settings
from processors.assembly import StreamOutcome, analyse_stream, claim_stream, record_failure
from processors.resilience import guarded, is_transient
from rtm import topics
from rtm.db import Conn

log = logging.getLogger(__name__)


def _analyse_one(conn: Conn) -> StreamOutcome | None:
    key = claim_stream(conn, settings.analysis_quiet_s)
    if key is None:
        return None
    try:
        with conn.transaction():  # a savepoint: a recording that cannot be analysed must not block the queue
            outcome = analyse_stream(conn, key, settings.session_margin_s, settings.max_session_s)
    except Exception as exc:
        if is_transient(exc):
            raise
        log.exception("recording %s/%s cannot be analysed", key.device_id, key.stream_id)
        outcome = record_failure(conn, key, f"{type(exc).__name__}: {exc}")
    # In the same transaction: flags never describe results that were rolled back.
    evaluate_patients(conn, [key.patient_id], datetime.now(UTC))
    return outcome


@app.timer(interval=settings.analysis_poll_s)
@guarded("analysis", settings.retry_max_backoff_s)
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


def _own_transactions(work: str) -> None:
    # These loops manage their own transactions (and an advisory lock, so that one worker of the
    # group runs each at a time).
    with psycopg.connect(settings.dsn("writer"), autocommit=True,
                         connect_timeout=max(1, round(settings.pg_connect_timeout_s))) as conn:
        now = datetime.now(UTC)
        if work == "flags":
            evaluate_all(conn, now)
        else:
            recompute_dirty(conn, now.date())


@app.timer(interval=settings.flags_sweep_interval_s)
@guarded("flags", settings.retry_max_backoff_s)
async def sweep_flags() -> None:
    """No-data flags need time to pass, not data; each patient's day ends at their own midnight."""
    await asyncio.to_thread(_own_transactions, "flags")


@app.timer(interval=settings.eligibility_interval_s)
@guarded("eligibility", settings.retry_max_backoff_s)
async def recompute_eligibility() -> None:
    await asyncio.to_thread(_own_transactions, "eligibility")
