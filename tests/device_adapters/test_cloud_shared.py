"""The vendor adapters' shared machinery without the stack: token encryption and key rotation,
Retry-After reading, and the OAuth client (PKCE, refresh, revoked grants) against a local token
endpoint that follows RFC 6749 and RFC 7636."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from device_adapters.cloud import oauth
from device_adapters.cloud.crypto import TokenCipher, TokenKeyError, local_key_spec, new_key_spec, rotate_local_keys
from device_adapters.cloud.errors import DEFAULT_RETRY_S, VendorRejected, retry_after_s
from device_adapters.cloud.fakes.server import ServedApp, serve


def test_cipher_round_trip_binding_and_rotation() -> None:
    old = TokenCipher.from_spec(new_key_spec("k1"))
    kid, blob = old.encrypt(b'{"access_token":"abc"}', b"polar:1")
    assert kid == "k1" and b"abc" not in blob
    assert old.decrypt(kid, blob, b"polar:1") == b'{"access_token":"abc"}'
    with pytest.raises(TokenKeyError, match="does not authenticate"):
        old.decrypt(kid, blob, b"polar:2")  # moved onto another connection
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(TokenKeyError, match="does not authenticate"):
        old.decrypt(kid, tampered, b"polar:1")
    spec_old = ",".join(f"{k}:{base64.urlsafe_b64encode(v).decode()}" for k, v in old.keys)
    rotated = TokenCipher.from_spec(new_key_spec("k2") + "," + spec_old)
    assert rotated.active_key_id == "k2"
    assert rotated.decrypt(kid, blob, b"polar:1") == b'{"access_token":"abc"}'  # old rows still open
    with pytest.raises(TokenKeyError, match="not configured"):
        TokenCipher.from_spec(new_key_spec("k3")).decrypt(kid, blob, b"polar:1")
    for bad, why in [("", "no vendor token key"), ("k1", "key_id:base64url"), ("k1:AAAA", "32 bytes"),
                     (new_key_spec("a") + "," + new_key_spec("a"), "unique")]:
        with pytest.raises(TokenKeyError, match=why):
            TokenCipher.from_spec(bad)


def test_local_keys_are_private_and_rotate(tmp_path: Path) -> None:
    spec = local_key_spec(tmp_path / "secrets")
    path = tmp_path / "secrets" / "vendor_token_keys"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and spec.startswith("k1:")
    assert local_key_spec(tmp_path / "secrets") == spec  # made once
    assert rotate_local_keys(tmp_path / "secrets") == "k2"
    assert TokenCipher.from_spec(path.read_text()).active_key_id == "k2"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_retry_after_forms() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    r = httpx.Response(429, headers={"Retry-After": "17"})
    assert retry_after_s(r, now) == 17
    r = httpx.Response(429, headers={"Retry-After": format_datetime(now + timedelta(seconds=90), usegmt=True)})
    assert retry_after_s(r, now) == pytest.approx(90)
    assert retry_after_s(httpx.Response(429, headers={"RateLimit-Reset": "600"}), now) == 600
    assert retry_after_s(httpx.Response(429), now) == DEFAULT_RETRY_S


class TokenServer:
    """An authorization server's token endpoint as RFC 6749/7636 describe it: codes single-use and
    bound to their PKCE challenge; refresh tokens rotate and the old one stops working."""

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}  # code -> S256 challenge
        self.refresh_tokens: set[str] = set()

    def issue_code(self, challenge: str) -> str:
        code = secrets.token_urlsafe(8)
        self.codes[code] = challenge
        return code

    def _tokens(self) -> Response:
        rt = secrets.token_urlsafe(8)
        self.refresh_tokens.add(rt)
        return JSONResponse({"access_token": secrets.token_urlsafe(8), "token_type": "Bearer",
                             "expires_in": 3600, "refresh_token": rt})

    async def token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if request.headers.get("authorization") != "Basic " + base64.b64encode(b"cid:csecret").decode():
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") == "authorization_code":
            challenge = self.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if challenge is None or digest != challenge:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            return self._tokens()
        if form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") not in self.refresh_tokens:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            self.refresh_tokens.discard(form["refresh_token"])
            return self._tokens()
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)


@pytest.fixture()
def token_server() -> Iterator[tuple[TokenServer, ServedApp]]:
    ts = TokenServer()
    served = serve(Starlette(routes=[Route("/token", ts.token, methods=["POST"])]))
    yield ts, served
    served.stop()


def test_oauth_code_with_pkce_refresh_and_revoked_grant(token_server: tuple[TokenServer, ServedApp]) -> None:
    ts, served = token_server
    p = oauth.OAuthProvider("test", "cid", "csecret", "https://auth.example/authorize", f"{served.url}/token",
                            scope="activity", pkce=True)
    state, verifier = oauth.new_state(), oauth.new_verifier()
    url = httpx.URL(oauth.authorization_url(p, "https://gw.example/cb", state, verifier))
    q = url.params
    assert q["state"] == state and q["code_challenge_method"] == "S256" and q["client_id"] == "cid"
    assert q["redirect_uri"] == "https://gw.example/cb" and q["response_type"] == "code"

    async def run() -> None:
        code = ts.issue_code(q["code_challenge"])
        with pytest.raises(VendorRejected):  # a wrong verifier: the code was not ours to use
            await oauth.exchange_code(p, "https://gw.example/cb", code, oauth.new_verifier())
        code = ts.issue_code(q["code_challenge"])
        token = await oauth.exchange_code(p, "https://gw.example/cb", code, verifier)
        assert token["access_token"] and token["expires_at"] > datetime.now(UTC).timestamp() + 3000
        with pytest.raises(VendorRejected):  # codes are single use
            await oauth.exchange_code(p, "https://gw.example/cb", code, verifier)
        new = await oauth.refresh(p, token)
        assert new["refresh_token"] != token["refresh_token"] and new["access_token"] != token["access_token"]
        with pytest.raises(VendorRejected):  # the rotated-away refresh token is dead
            await oauth.refresh(p, token)
        with pytest.raises(VendorRejected, match="no refresh token"):
            await oauth.refresh(p, {"access_token": "x"})

    asyncio.run(run())
