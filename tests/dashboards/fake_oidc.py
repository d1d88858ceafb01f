"""A faithful small OpenID Connect provider for tests, served on localhost: discovery document,
JWKS, the authorization code flow with PKCE (S256 only) and client_secret_basic at the token
endpoint, and RS256-signed ID tokens. The test sets who is signed in at the provider and may make
it misbehave: sign with a key not in its JWKS ("forged") or put another nonce in the token."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse
from joserfc import jwt
from joserfc.jwk import RSAKey

Mode = Literal["good", "forged", "wrong_nonce", "wrong_audience"]


@dataclass
class FakeIdP:
    issuer: str
    client_id: str
    client_secret: str
    subject: str = "idp-user-1"
    email: str | None = None
    email_verified: bool = True
    mode: Mode = "good"
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "idp-1"}, private=True))
    rogue: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "idp-1"}, private=True))
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: int = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, Any]:
            return {
                "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            }  # fmt: skip

        @app.get("/jwks")
        def jwks() -> dict[str, Any]:
            return {"keys": [{**self.key.as_dict(private=False), "use": "sig", "alg": "RS256"}]}

        @app.get("/authorize")
        def authorize(response_type: str, client_id: str, redirect_uri: str, scope: str, state: str, nonce: str,
                      code_challenge: str, code_challenge_method: str) -> RedirectResponse:  # fmt: skip
            if response_type != "code" or client_id != self.client_id or "openid" not in scope.split():
                raise HTTPException(400, "invalid_request")
            if code_challenge_method != "S256" or len(code_challenge) < 43:
                raise HTTPException(400, "PKCE with S256 is required")
            code = secrets.token_urlsafe(24)
            self.codes[code] = {"nonce": nonce, "challenge": code_challenge, "redirect_uri": redirect_uri}
            return RedirectResponse(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}", status_code=302)

        @app.post("/token")
        def token(request: Request, grant_type: str = Form(...), code: str = Form(...),
                  redirect_uri: str = Form(...), code_verifier: str = Form(...)) -> JSONResponse:  # fmt: skip
            self.token_requests += 1
            basic = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
            if request.headers.get("authorization") != f"Basic {basic}":
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            issued = self.codes.pop(code, None)  # single use
            if grant_type != "authorization_code" or issued is None or issued["redirect_uri"] != redirect_uri:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            digest = base64.urlsafe_b64encode(hashlib.sha256(code_verifier.encode()).digest()).rstrip(b"=").decode()
            if digest != issued["challenge"]:
                return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, status_code=400)
            now = int(time.time())
            claims: dict[str, Any] = {
                "iss": self.issuer, "sub": self.subject, "iat": now, "exp": now + 300,
                "aud": "someone-else" if self.mode == "wrong_audience" else self.client_id,
                "nonce": "not-the-nonce" if self.mode == "wrong_nonce" else issued["nonce"],
            }  # fmt: skip
            if self.email is not None:
                claims |= {"email": self.email, "email_verified": self.email_verified}
            key = self.rogue if self.mode == "forged" else self.key
            id_token = jwt.encode({"alg": "RS256", "kid": "idp-1"}, claims, key)
            return JSONResponse({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                                 "expires_in": 300, "id_token": id_token})  # fmt: skip

        return app
