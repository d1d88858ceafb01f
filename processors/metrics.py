"""Prometheus metrics of one worker, served at /metrics on the worker's web port."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("rtm_events_in_total", "records consumed", ["topic"])
EVENTS_OUT = Counter("rtm_events_out_total", "records produced", ["topic"])
DEAD_LETTERS = Counter("rtm_dead_letters_total", "records sent to the dead-letter topic", ["reason"])
PROCESSING_LATENCY = Histogram(
    "rtm_processing_latency_seconds", "from the record's broker timestamp to its batch being stored", ["topic"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
SINK_LATENCY = Histogram("rtm_sink_seconds", "one database transaction of a sink", ["sink"],
                         buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
SINK_BATCH_ROWS = Histogram("rtm_sink_batch_rows", "rows per sink transaction", ["sink"],
                            buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 5000))
CONSUMER_LAG = Gauge("rtm_consumer_lag", "high-water mark minus committed offset", ["topic", "partition"])
STREAMS_ANALYSED = Counter("rtm_streams_analysed_total", "IMU recordings analysed", ["status"])
ANALYSIS_SAMPLES = Counter("rtm_analysis_samples_total", "IMU samples analysed")
WORKER_ERRORS = Counter("rtm_worker_errors_total", "errors met and survived (retried or backed off from)",
                        ["component", "kind"])
OWNERSHIP_REFUSED = Counter("rtm_ownership_refused_total", "events refused for touching what another owns",
                            ["what"])
