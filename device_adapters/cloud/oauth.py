"""OAuth 2.0 authorization-code flow (RFC 6749 4.1) per patient connection, with PKCE (RFC 7636,
S256) where the vendor supports it and a single-use `state` always; refresh (RFC 6749 6) through
authlib's httpx client."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.deprecate import AuthlibDeprecationWarning

with warnings.catch_warnings():
    # authlib 1.9 prefers the httpx2 package and warns when it falls back to httpx, which we use.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from device_adapters.cloud.errors import VendorRejected, VendorUnavailable

# Grant errors that mean the user's grant is gone (revoked, expired, or the code was used).
_GRANT_GONE = frozenset({"invalid_grant", "invalid_token", "unauthorized_client", "access_denied"})


@dataclass(frozen=True)
class OAuthProvider:
    vendor: str
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    scope: str | None = None
    pkce: bool = True
    token_auth: str = "client_secret_basic"  # or client_secret_post
    # A vendor whose token endpoint is not RFC 6749 (Withings): extra form fields on every token
    # request, and a hook that rewrites its answer into a standard one.
    token_params: tuple[tuple[str, str], ...] = ()
    token_response: Callable[[httpx.Response], httpx.Response] | None = None
    # Extra query parameters of the consent URL (Google: access_type=offline for a refresh token).
    auth_params: tuple[tuple[str, str], ...] = ()


def new_state() -> str:
    return str(generate_token(43))


def new_verifier() -> str:
    return str(generate_token(64))  # RFC 7636 4.1: 43-128 characters


def _client(p: OAuthProvider, redirect_uri: str | None = None, **kw: Any) -> AsyncOAuth2Client:
    client = AsyncOAuth2Client(
        client_id=p.client_id,
        client_secret=p.client_secret,
        scope=p.scope,
        redirect_uri=redirect_uri,
        token_endpoint_auth_method=p.token_auth,
        code_challenge_method="S256" if p.pkce else None,
        timeout=10.0,
        **kw,
    )
    if p.token_response is not None:
        client.register_compliance_hook("access_token_response", p.token_response)
        client.register_compliance_hook("refresh_token_response", p.token_response)
    return client


def authorization_url(p: OAuthProvider, redirect_uri: str, state: str, verifier: str) -> str:
    client = _client(p, redirect_uri)
    url, _ = client.create_authorization_url(
        p.authorize_url, state=state, code_verifier=verifier if p.pkce else None, **dict(p.auth_params)
    )
    return str(url)


def _token(raw: Any) -> dict[str, Any]:
    token = dict(raw)
    if not token.get("access_token"):
        raise VendorUnavailable("the token endpoint answered without an access token")
    if "expires_at" not in token and token.get("expires_in") is not None:
        token["expires_at"] = int(time.time()) + int(token["expires_in"])
    return token


async def _call(p: OAuthProvider, what: str, coro: Any) -> dict[str, Any]:
    try:
        return _token(await coro)
    except OAuthError as exc:
        if exc.error in _GRANT_GONE:
            raise VendorRejected(f"{p.vendor} {what}: {exc.error}") from None
        raise VendorUnavailable(f"{p.vendor} {what}: {exc.error}") from None
    except (httpx.HTTPError, ValueError) as exc:
        raise VendorUnavailable(f"{p.vendor} {what} failed: {type(exc).__name__}") from None


async def exchange_code(p: OAuthProvider, redirect_uri: str, code: str, verifier: str) -> dict[str, Any]:
    async with _client(p, redirect_uri) as client:
        extra: dict[str, Any] = {"code_verifier": verifier} if p.pkce else {}
        extra.update(p.token_params)
        return await _call(p, "code exchange", client.fetch_token(p.token_url, code=code, **extra))


async def refresh(p: OAuthProvider, token: dict[str, Any]) -> dict[str, Any]:
    """A new token; a vendor that does not rotate refresh tokens keeps the old one."""
    if not token.get("refresh_token"):
        raise VendorRejected(f"{p.vendor}: the access token expired and the vendor gave no refresh token")
    async with _client(p) as client:
        new = await _call(
            p, "token refresh",
            client.refresh_token(p.token_url, refresh_token=token["refresh_token"], **dict(p.token_params)),
        )
    new.setdefault("refresh_token", token["refresh_token"])
    return new
