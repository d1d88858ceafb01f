"""Prometheus metrics across `rtm gateway --workers N` processes (prometheus_client's multiprocess
mode): each process writes its samples to files in PROMETHEUS_MULTIPROC_DIR and /metrics merges
them, so that a scrape of any one process reports the whole gateway rather than one Nth of it."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess(state_dir: Path) -> Path:
    """Before the worker processes start (they inherit the environment): choose the folder (the
    environment's, or one in the state folder) and empty it, since files of an earlier run would
    be counted again. Must run before any metric is created in the processes that serve."""
    folder = Path(os.environ.get(ENV) or state_dir / "gateway-metrics")
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ[ENV] = str(folder)
    return folder


def registry() -> CollectorRegistry:
    """What /metrics serves: the merged files in multiprocess mode, else this process's registry."""
    if not os.environ.get(ENV):
        return REGISTRY
    merged = CollectorRegistry()
    MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return merged
