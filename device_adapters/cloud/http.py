"""The HTTP side every vendor client shares: the vendor's base URL and timeout on the gateway's
shared `httpx.AsyncClient`, and transport failures and unreadable bodies as `VendorUnavailable`
(retried with back-off), named with the vendor's `label`."""

from __future__ import annotations

from typing import Any

import httpx

from device_adapters.cloud.errors import VendorUnavailable


class VendorHttp:
    label = "vendor"  # how messages name the vendor

    def __init__(self, http: httpx.AsyncClient, base_url: str, timeout_s: float) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    async def send(self, method: str, url: str, what: str, **kw: Any) -> httpx.Response:
        try:
            return await self.http.request(method, url, timeout=self.timeout_s, **kw)
        except httpx.HTTPError as exc:
            raise VendorUnavailable(f"{self.label} {what} failed: {type(exc).__name__}") from None

    def json_of(self, resp: httpx.Response, what: str) -> Any:
        try:
            return resp.json()
        except ValueError:
            raise VendorUnavailable(f"{self.label} {what}: an unreadable body") from None
