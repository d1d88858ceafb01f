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

# Home hubs. Per-report distributions, not per-hub gauges: a national fleet would be 100,000 label
# values. Which hub is in trouble is a query on the hub_health table.
HUB_REPORTS = Counter("rtm_hub_health_reports_total", "hub health reports by agent version", ["agent_version"])
HUB_EVICTIONS = Counter("rtm_hub_spool_evictions_total", "events hubs evicted from full spools (as reported)")
HUB_SPOOL_DEPTH = Histogram(
    "rtm_hub_spool_depth_events", "events waiting in a hub's spool, per report",
    buckets=(0, 1, 10, 100, 1_000, 10_000, 100_000, 1_000_000),
)
HUB_BATTERY = Histogram(
    "rtm_hub_device_battery_percent", "device battery level, per report (when the device has one)",
    buckets=(5, 10, 20, 35, 50, 75, 100),
)
HUB_SYNC_AGE = Histogram(
    "rtm_hub_sync_age_seconds", "time since the device's last upload, per report (never synced: +Inf)",
    buckets=(60, 300, 900, 3_600, 6 * 3_600, 86_400, 3 * 86_400),
)
HUB_DISCONNECTED = Counter("rtm_hub_device_disconnected_reports_total", "reports of a device not connected")
PAIRING = Counter("rtm_ingest_pairing_total", "pairing code redemptions by outcome", ["outcome"])
