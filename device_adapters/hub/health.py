"""The hub's health report to the gateway: `PUT /v1/hub/health` once per paired device, with that
device's credential (a hub holds no credential of its own). Each report carries the hub's state
(spool depth and bytes, evictions, rejections, agent version) and the device's (battery, connected,
last accepted upload, bad frames, clock resets)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from device_adapters.hub.agent import HubAgent

log = logging.getLogger(__name__)


def agent_version() -> str:
    try:
        return metadata.version("rtm-pipeline")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


def device_reports(agent: HubAgent) -> dict[str, dict[str, Any]]:
    """The report body of each device (paired or not)."""
    h = agent.health()
    hub = {"hub_id": agent.config.hub_id, "agent_version": agent_version(), "at": _iso(h["at"]),
           "spool_depth": h["spool_depth"], "spool_bytes": h["spool_bytes"], "evictions": h["evicted"],
           "rejected": h["rejected"]}
    out: dict[str, dict[str, Any]] = {}
    for device_id, d in h["devices"].items():
        out[device_id] = {**hub, "battery_pct": d["battery_pct"], "connected": d["connected"],
                          "last_sync": _iso(agent.uploader.stats.last_sync_by_device.get(device_id)),
                          "bad_frames": sum(d["bad_frames"].values()), "clock_resets": d["clock_resets"]}
    return out


async def report_health(agent: HubAgent) -> dict[str, int]:
    """Send every paired device's report; returns the gateway's status per device (0: no answer).
    Never raises for the network or the gateway: health reporting must not stop the agent."""
    statuses: dict[str, int] = {}
    for device_id, body in device_reports(agent).items():
        token = agent.uploader.tokens.get(device_id)
        if token is None:
            continue
        try:
            r = await agent.uploader.http.put("/v1/hub/health", json=body,
                                              headers={"Authorization": f"Bearer {token}"})
            statuses[device_id] = r.status_code
            if r.status_code != 204:
                log.warning("%s: health report refused (%d): %s", device_id, r.status_code, r.text[:200])
        except httpx.HTTPError as exc:
            statuses[device_id] = 0
            log.warning("%s: health report not sent (%s)", device_id, exc)
    return statuses
