"""Every metric a Grafana panel queries is one the code exports (prometheus-client registry)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import ingest.metrics
import processors.metrics

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards" / "grafana"
_NAME = re.compile(r"\b(rtm_[a-z0-9_]+)\b")
_PROMETHEUS_OWN = re.compile(r"\bup\b")  # the series Prometheus writes per scrape target


def _exported() -> set[str]:
    assert ingest.metrics.REQUESTS is not None and processors.metrics.EVENTS_IN is not None  # registered on import
    # Every sample name a collector can expose (counters' _total, histograms' _bucket/_sum/_count).
    return {n for n in REGISTRY._names_to_collectors if n.startswith("rtm_")}


def _exprs(panel: dict[str, object]) -> list[str]:
    out = [str(t["expr"]) for t in panel.get("targets", []) if isinstance(t, dict) and "expr" in t]
    for child in panel.get("panels", []):
        out += _exprs(child)
    return out


def test_dashboards_query_only_exported_metrics() -> None:
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files
    exported = _exported()
    queried: set[str] = set()
    for f in files:
        doc = json.loads(f.read_text())
        for panel in doc["panels"]:
            exprs = _exprs(panel)
            assert exprs, f"{f.name}: panel {panel['title']!r} has no query"
            for expr in exprs:
                names = set(_NAME.findall(expr))
                assert names or _PROMETHEUS_OWN.search(expr), f"{f.name}: {expr!r} names no rtm_ metric"
                queried |= names
    missing = sorted(queried - exported)
    assert missing == [], f"panels query metrics the code does not export: {missing}"
    assert len(queried) >= 10


# What the operators' dashboard must plot (issue: ingest rate and rejections by reason, consumer lag,
# processing latency, dead letters, sink latency, sync health), as the metric each one needs.
REQUIRED = {
    "ingest rate": "rtm_ingest_events_total",
    "rejections by reason": "rtm_ingest_rejected_total",
    "consumer lag": "rtm_consumer_lag",
    "processing latency": "rtm_processing_latency_seconds_bucket",
    "dead letters": "rtm_dead_letters_total",
    "sink latency": "rtm_sink_seconds_bucket",
    "sync health": "rtm_ingest_outbox_oldest_unstored_seconds",
}


def test_one_operators_dashboard_with_every_required_panel() -> None:
    files = sorted(DASHBOARDS.glob("*.json"))
    assert [f.name for f in files] == ["rtm-overview.json"], "one operators' dashboard, not copies"
    doc = json.loads(files[0].read_text())
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"]), "panel ids must be unique"
    titled = {p["title"].lower(): set(_NAME.findall(" ".join(_exprs(p)))) for p in doc["panels"]}
    for words, metric in REQUIRED.items():
        assert any(words in title and metric in names for title, names in titled.items()), (
            f"no panel titled with {words!r} plotting {metric}"
        )


def test_the_check_catches_a_made_up_metric() -> None:
    assert "rtm_made_up_total" not in _exported()
    assert "rtm_ingest_requests_total" in _exported()
