"""What a vendor call can end in, shared by every vendor adapter, and the reading of the
vendors' rate-limit answers."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx


class VendorUnavailable(RuntimeError):
    """The vendor failed or timed out: try again later with back-off."""


class VendorRejected(RuntimeError):
    """The vendor refused the user's token (401/403, invalid_grant): the patient must connect again.
    Never retried: the connection is marked and the clinic sees it."""


class RateLimited(RuntimeError):
    """429 (or the vendor's budget headers say it is spent): wait `retry_after_s` before the next call."""

    def __init__(self, retry_after_s: float, what: str) -> None:
        super().__init__(f"{what}: rate limited for {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


# Header names other than Retry-After that vendors use for "seconds until the budget resets".
RESET_HEADERS = ("ratelimit-reset", "x-ratelimit-reset")
DEFAULT_RETRY_S = 60.0  # a 429 that says nothing: one minute, the shortest window vendors document


def retry_after_s(resp: httpx.Response, now: datetime | None = None) -> float:
    """Retry-After as delta-seconds or an HTTP date (RFC 9110 10.2.3), else a reset header."""
    value = resp.headers.get("retry-after")
    if value:
        v = value.strip()
        if v.isdigit():
            return float(v)
        try:
            when = parsedate_to_datetime(v)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    for name in RESET_HEADERS:
        raw = resp.headers.get(name)
        if raw and raw.strip().split(",")[0].strip().isdigit():
            return float(raw.strip().split(",")[0])
    return DEFAULT_RETRY_S


def raise_for_vendor(resp: httpx.Response, what: str) -> None:
    """Map a vendor answer to the errors above; 2xx (and 204) return."""
    if resp.status_code == 429:
        raise RateLimited(retry_after_s(resp), what)
    if resp.status_code in (401, 403):
        raise VendorRejected(f"{what}: the vendor refused the user's token ({resp.status_code})")
    if resp.status_code >= 300:
        raise VendorUnavailable(f"{what}: the vendor answered {resp.status_code}")
