"""Bearer tokens for devices and clinics: `<prefix>_<id>.<secret>`.

The secret is 256 random bits, so a keyed fast hash (HMAC-SHA256 with a server-side pepper) is
as safe as a slow password hash here: there is nothing to brute-force, and a leaked table is
useless without the pepper. It keeps authentication off the hot path's CPU budget.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

DEVICE_PREFIX = "rtmd"
CLINIC_PREFIX = "rtmc"
_TOKEN = re.compile(r"^(rtmd|rtmc)_([a-z0-9]{16})\.([A-Za-z0-9_-]{43})$")


def new_token(prefix: str) -> tuple[str, str, str]:
    """Return (id, secret, token text)."""
    ident = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return ident, secret, f"{prefix}_{ident}.{secret}"


def parse_token(text: str, prefix: str) -> tuple[str, str] | None:
    m = _TOKEN.match(text)
    if m is None or m.group(1) != prefix:
        return None
    return m.group(2), m.group(3)


def hash_secret(pepper: bytes, secret: str) -> bytes:
    return hmac.new(pepper, secret.encode(), hashlib.sha256).digest()


def secret_matches(pepper: bytes, secret: str, stored: bytes) -> bool:
    return hmac.compare_digest(hash_secret(pepper, secret), stored)
