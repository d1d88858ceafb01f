"""Vendor documents turned into contract events one at a time: a document that breaks the contract
(more steps than its time span allows, an end before its start) is dropped and counted, never fatal.
One bad document must not stop the sync of a patient's other days, and a sync that raised would be
retried for ever with the same document."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter
from pydantic import ValidationError

from rtm.contract import ActivityInterval

log = logging.getLogger("device_adapters.cloud")
DROPPED = Counter(
    "rtm_vendor_documents_dropped_total", "vendor documents dropped because they break the event contract",
    ["vendor"],
)


def interval_or_none(vendor: str, **fields: Any) -> ActivityInterval | None:
    """The interval, or None (counted and logged by field and error type: no values, which are
    patient data) when the vendor's document breaks the contract."""
    try:
        return ActivityInterval(**fields)
    except ValidationError as exc:
        DROPPED.labels(vendor).inc()
        what = sorted({f"{'.'.join(map(str, e['loc'])) or 'interval'}: {e['type']}" for e in exc.errors()})
        log.warning("dropped a %s document that breaks the contract (%s)", vendor, "; ".join(what))
        return None


def append_valid(out: list[ActivityInterval], vendor: str, **fields: Any) -> None:
    """`out.append` of the interval, unless the document breaks the contract (see above)."""
    interval = interval_or_none(vendor, **fields)
    if interval is not None:
        out.append(interval)
