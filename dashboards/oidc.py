"""Optional OpenID Connect sign-in (authorization code flow with PKCE, OpenID Connect Core 1.0
section 3.1; RFC 7636) for a clinic with an identity provider: authlib's OAuth 2 client for the
flow, its companion joserfc for the ID token's signature and claims.

The provider's identity is mapped to an existing staff account of the configured clinic: first by
the bound (issuer, subject), else by a verified e-mail address of an account not yet bound (which
binds it). A staff account is created only if the admin configured `oidc_auto_create_role`."""

from __future__ import annotations

import hashlib
import secrets
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from authlib.deprecate import AuthlibDeprecationWarning

with warnings.catch_warnings():
    # authlib 1.9 prefers the httpx2 package and warns when it falls back to httpx, which we use.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from dashboards.auth import AuthError, Conn, NewStaff, Staff, create_staff, staff_by_id
from dashboards.settings import AppSettings

# Asymmetric signatures only: a symmetric (HS*) or unsigned ("none") ID token is refused.
_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
_LEEWAY_S = 60  # clock skew tolerated on exp/iat between us and the provider


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks: dict[str, Any]


def discover(a: AppSettings) -> Provider:
    """The provider's discovery document (OpenID Connect Discovery 1.0) and its signing keys."""
    if not a.oidc_discovery_url:
        raise AuthError("sign-in with an identity provider is not configured")
    try:
        doc = httpx.get(a.oidc_discovery_url, timeout=10).raise_for_status().json()
        jwks = httpx.get(doc["jwks_uri"], timeout=10).raise_for_status().json()
        return Provider(doc["issuer"], doc["authorization_endpoint"], doc["token_endpoint"], jwks)
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        raise AuthError(f"the identity provider cannot be reached or is misconfigured ({exc})") from None


def _client(a: AppSettings) -> OAuth2Client:
    secret = a.oidc_client_secret.get_secret_value() if a.oidc_client_secret else None
    return OAuth2Client(client_id=a.oidc_client_id, client_secret=secret, redirect_uri=a.oidc_redirect(),
                        scope="openid email profile", code_challenge_method="S256", timeout=10)


def _hash(state: str) -> bytes:
    return hashlib.sha256(state.encode()).digest()


def begin(conn: Conn, a: AppSettings) -> tuple[str, str]:
    """(the provider's authorization URL, the state the browser must bring back in its cookie)."""
    provider = discover(a)
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48)
    with _client(a) as client:
        url, _ = client.create_authorization_url(provider.authorization_endpoint, state=state, nonce=nonce,
                                                 code_verifier=verifier)  # fmt: skip
    with conn.transaction():
        conn.execute(
            "insert into app_oidc_logins (state_hash, nonce, code_verifier, expires_at) values (%s, %s, %s, %s)",
            (_hash(state), nonce, verifier, datetime.now(UTC) + timedelta(minutes=a.oidc_login_minutes)),
        )
    return str(url), state


def verify_id_token(id_token: str, provider: Provider, client_id: str, nonce: str) -> dict[str, Any]:
    """The ID token's claims once its signature (the provider's JWKS), issuer, audience, expiry and
    nonce are checked (OpenID Connect Core 1.0 section 3.1.3.7). Raises AuthError."""
    try:
        keys = KeySet.import_key_set(provider.jwks)  # type: ignore[arg-type]  # checked by the import itself
        token = jwt.decode(id_token, keys, algorithms=_ALGORITHMS)
        jwt.JWTClaimsRegistry(
            leeway=_LEEWAY_S,
            iss={"essential": True, "value": provider.issuer},
            aud={"essential": True, "value": client_id},
            sub={"essential": True},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(token.claims)
    except (JoseError, ValueError) as exc:
        raise AuthError(f"the identity provider's ID token was refused ({exc})") from None
    return dict(token.claims)


def finish(conn: Conn, a: AppSettings, state: str, code: str, cookie_state: str | None) -> Staff:
    """Redeem the code, check the ID token and return the staff account it maps to."""
    if not cookie_state or not secrets.compare_digest(state, cookie_state):
        raise AuthError("this sign-in did not start in this browser: start it again")
    with conn.transaction():
        row = conn.execute(
            """update app_oidc_logins set used_at = now()
                where state_hash = %s and used_at is null and expires_at > now() returning nonce, code_verifier""",
            (_hash(state),),
        ).fetchone()
    if row is None:
        raise AuthError("this sign-in expired or was already used: start it again")
    nonce, verifier = str(row[0]), str(row[1])
    provider = discover(a)
    try:
        with _client(a) as client:
            token = client.fetch_token(provider.token_endpoint, code=code, code_verifier=verifier,
                                       grant_type="authorization_code")  # fmt: skip
    except Exception as exc:  # authlib raises OAuthError and httpx errors; all refuse the sign-in
        raise AuthError(f"the identity provider refused the code ({exc})") from None
    if not isinstance(token.get("id_token"), str):
        raise AuthError("the identity provider returned no ID token")
    claims = verify_id_token(token["id_token"], provider, str(a.oidc_client_id), nonce)
    return map_identity(conn, a, provider.issuer, claims)


def map_identity(conn: Conn, a: AppSettings, issuer: str, claims: dict[str, Any]) -> Staff:
    clinic, subject = str(a.oidc_clinic), str(claims["sub"])
    email = claims.get("email") if claims.get("email_verified") is True else None
    with conn.transaction():
        row = conn.execute("select staff_id from app_staff where oidc_issuer = %s and oidc_subject = %s"
                           " and clinic_id = %s", (issuer, subject, clinic)).fetchone()  # fmt: skip
        if row is None and isinstance(email, str):
            row = conn.execute(
                """update app_staff set oidc_issuer = %s, oidc_subject = %s
                    where email = %s and clinic_id = %s and oidc_subject is null returning staff_id""",
                (issuer, subject, email.lower(), clinic),
            ).fetchone()
        if row is None and a.oidc_auto_create_role is not None and isinstance(email, str):
            staff = create_staff(conn, NewStaff(
                staff_id=f"oidc-{secrets.token_hex(6)}", clinic_id=clinic, email=email,
                display_name=str(claims.get("name") or email), role=a.oidc_auto_create_role,
                password=secrets.token_urlsafe(32)))  # fmt: skip  # a password nobody knows
            conn.execute("update app_staff set oidc_issuer = %s, oidc_subject = %s where staff_id = %s",
                         (issuer, subject, staff.staff_id))
            row = (staff.staff_id,)
        if row is None:
            raise AuthError("no staff account of this clinic matches your identity: ask the clinic's admin")
        found = staff_by_id(conn, str(row[0]))
    if found is None or not found[1]:
        raise AuthError("this account is disabled")
    return found[0]
