"""Who is calling: a device (its enrolment credential) or a clinic (its API key), both as
`Authorization: Bearer <token>`. Unknown, malformed or wrong tokens get 401; revoked ones 403,
and so does a valid device credential on a clinic route."""

from __future__ import annotations

import time
from dataclasses import dataclass

from starlette.requests import Request

from ingest.problems import Problem
from ingest.store import DeviceCredential, Store
from ingest.tokens import CLINIC_PREFIX, DEVICE_PREFIX, parse_token, secret_matches

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="rtm"'}


@dataclass(frozen=True)
class ClinicPrincipal:
    key_id: str
    clinic_id: str


def _unauthenticated(detail: str) -> Problem:
    return Problem(401, "unauthenticated", detail, headers=dict(_CHALLENGE))


def bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise _unauthenticated("send the credential as 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthenticated("only the Bearer scheme is accepted")
    return token.strip()


class Authenticator:
    def __init__(self, store: Store, pepper: bytes, cache_ttl_s: float) -> None:
        self.store = store
        self.pepper = pepper
        self.ttl = cache_ttl_s
        self._devices: dict[str, tuple[float, DeviceCredential | None]] = {}

    def forget(self, credential_id: str) -> None:
        self._devices.pop(credential_id, None)

    async def device(self, request: Request) -> DeviceCredential:
        parsed = parse_token(bearer(request), DEVICE_PREFIX)
        if parsed is None:
            raise _unauthenticated("not a device credential")
        cred_id, secret = parsed
        now = time.monotonic()
        hit = self._devices.get(cred_id)
        if hit is not None and hit[0] > now:
            cred = hit[1]
        else:
            cred = await self.store.device_credential(cred_id)
            if len(self._devices) > 100_000:
                self._devices.clear()
            self._devices[cred_id] = (now + self.ttl, cred)
        # The secret is checked on every request, cached or not: the cache only saves the lookup.
        if cred is None or not secret_matches(self.pepper, secret, cred.secret_hash):
            raise _unauthenticated("unknown credential")
        if cred.revoked_at is not None:
            raise Problem(403, "credential-revoked", "this device's enrolment was revoked")
        return cred

    async def clinic(self, request: Request) -> ClinicPrincipal:
        token = bearer(request)
        parsed = parse_token(token, CLINIC_PREFIX)
        if parsed is None:
            if parse_token(token, DEVICE_PREFIX) is not None:
                await self.device(request)  # an unknown or wrong device token is still a 401
                raise Problem(403, "forbidden", "a device credential cannot use this route; it needs a clinic API key")
            raise _unauthenticated("not a clinic API key")
        key_id, secret = parsed
        key = await self.store.clinic_key(key_id)
        if key is None or not secret_matches(self.pepper, secret, key.secret_hash):
            raise _unauthenticated("unknown clinic API key")
        if key.revoked_at is not None:
            raise Problem(403, "credential-revoked", "this clinic API key was revoked")
        return ClinicPrincipal(key.key_id, key.clinic_id)
