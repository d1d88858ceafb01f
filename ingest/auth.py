"""Who is calling: a device (its enrolment credential) or a clinic (its API key), both as
`Authorization: Bearer <token>`. Unknown, malformed or wrong tokens get 401; revoked ones 403,
and so does a valid device credential on a clinic route."""

from __future__ import annotations

import time
from dataclasses import dataclass

from starlette.requests import Request

from ingest.metrics import AUTH_LOOKUPS
from ingest.problems import Problem, retry_after
from ingest.ratelimit import TokenBucketLimiter
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
    """Credential checks with two caches: verified credentials for `cache_ttl_s` (the secret is
    still checked on every request), and ids the database does not know for `negative_ttl_s`.
    A client whose tokens keep failing spends its `failures` bucket (per IP address); once it is
    empty, its unknown tokens get 429 without a database lookup, so that a stream of bogus tokens
    cannot turn into a stream of queries. Clinic keys have a request bucket each (`clinic_limit`)."""

    def __init__(
        self,
        store: Store,
        pepper: bytes,
        cache_ttl_s: float,
        negative_ttl_s: float = 60.0,
        failures: TokenBucketLimiter | None = None,
        clinic_limit: TokenBucketLimiter | None = None,
    ) -> None:
        self.store = store
        self.pepper = pepper
        self.ttl = cache_ttl_s
        self.negative_ttl = negative_ttl_s
        self.failures = failures
        self.clinic_limit = clinic_limit
        self._devices: dict[str, tuple[float, DeviceCredential | None]] = {}
        self._unknown: dict[str, float] = {}  # credential or key id -> until when it is known unknown

    def forget(self, credential_id: str) -> None:
        self._devices.pop(credential_id, None)

    def _client(self, request: Request) -> str:
        return request.client.host if request.client is not None else "-"

    def _guard(self, request: Request, token_id: str) -> None:
        """Before a database lookup: known-unknown ids and clients out of failures cost nothing."""
        until = self._unknown.get(token_id)
        if until is not None:
            if until > time.monotonic():
                self._failed(request)
                raise _unauthenticated("unknown credential")
            del self._unknown[token_id]
        if self.failures is not None:
            wait = self.failures.peek(self._client(request))
            if wait > 0:
                raise Problem(
                    429,
                    "rate-limited",
                    "too many failed authentications from this address; slow down",
                    headers=retry_after(wait),
                    extra={"retry_after_s": round(wait, 3)},
                )

    def _failed(self, request: Request) -> None:
        if self.failures is not None:
            self.failures.acquire(self._client(request))

    def _remember_unknown(self, token_id: str) -> None:
        if len(self._unknown) > 100_000:
            self._unknown.clear()
        self._unknown[token_id] = time.monotonic() + self.negative_ttl

    async def device(self, request: Request) -> DeviceCredential:
        parsed = parse_token(bearer(request), DEVICE_PREFIX)
        if parsed is None:
            self._failed(request)
            raise _unauthenticated("not a device credential")
        cred_id, secret = parsed
        now = time.monotonic()
        hit = self._devices.get(cred_id)
        if hit is not None and hit[1] is not None and not secret_matches(self.pepper, secret, hit[1].secret_hash):
            hit = None  # the secret may have changed since (a hub redeemed a pairing code): ask again
        if hit is not None and hit[0] > now:
            cred = hit[1]
        else:
            self._guard(request, cred_id)
            AUTH_LOOKUPS.labels("device").inc()
            cred = await self.store.device_credential(cred_id)
            if cred is None:
                self._remember_unknown(cred_id)
            if len(self._devices) > 100_000:
                self._devices.clear()
            self._devices[cred_id] = (now + self.ttl, cred)
        # The secret is checked on every request, cached or not: the cache only saves the lookup.
        if cred is None or not secret_matches(self.pepper, secret, cred.secret_hash):
            self._failed(request)
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
            self._failed(request)
            raise _unauthenticated("not a clinic API key")
        key_id, secret = parsed
        self._guard(request, key_id)
        AUTH_LOOKUPS.labels("clinic").inc()
        key = await self.store.clinic_key(key_id)
        if key is None:
            self._remember_unknown(key_id)
        if key is None or not secret_matches(self.pepper, secret, key.secret_hash):
            self._failed(request)
            raise _unauthenticated("unknown clinic API key")
        if key.revoked_at is not None:
            raise Problem(403, "credential-revoked", "this clinic API key was revoked")
        if self.clinic_limit is not None:
            wait = self.clinic_limit.acquire(key.key_id)
            if wait > 0:
                raise Problem(
                    429,
                    "rate-limited",
                    "this clinic API key sends faster than its limit; slow down",
                    headers=retry_after(wait),
                    extra={"retry_after_s": round(wait, 3)},
                )
        return ClinicPrincipal(key.key_id, key.clinic_id)
