"""Prometheus metrics of the gateway (served on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("rtm_ingest_requests_total", "HTTP requests by route and status", ["route", "status"])
LATENCY = Histogram(
    "rtm_ingest_request_seconds",
    "request latency by route",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
EVENTS = Counter(
    "rtm_ingest_events_total", "events by kind and outcome (accepted, duplicate)", ["kind", "outcome"]
)
REJECTED = Counter("rtm_ingest_rejected_total", "rejected requests by problem code", ["code"])
SAMPLES = Counter("rtm_ingest_imu_samples_total", "IMU samples accepted (acknowledged by the broker)")
WEBHOOKS = Counter(
    "rtm_ingest_webhooks_total", "vendor notifications by vendor and outcome", ["vendor", "outcome"]
)
# Whole-table figures that every process reads alike: across processes the latest reading counts.
OUTBOX_DEPTH = Gauge(
    "rtm_ingest_outbox_depth", "events accepted but not yet stored by the sink (whole table)",
    multiprocess_mode="mostrecent",
)
OUTBOX_OLDEST_S = Gauge(
    "rtm_ingest_outbox_oldest_unstored_seconds", "age of the oldest accepted event not yet stored (0: none)",
    multiprocess_mode="mostrecent",
)
OUTBOX_PUBLISHED = Counter(
    "rtm_ingest_outbox_published_total", "outbox rows the broker acknowledged, by path (fast, retry)", ["path"]
)
OUTBOX_FAILURES = Counter("rtm_ingest_outbox_publish_failures_total", "outbox rows the broker did not acknowledge")
OUTBOX_REDUE = Counter(
    "rtm_ingest_outbox_redue_total", "unstored outbox rows made due at once after a broker failure"
)
OUTBOX_PRUNED = Counter("rtm_ingest_outbox_pruned_total", "stored outbox rows deleted after the retention")
AUTH_LOOKUPS = Counter("rtm_ingest_auth_lookups_total", "credential lookups in the database, by kind", ["kind"])
