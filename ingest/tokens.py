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


# Pairing codes are typed by a person: Crockford's base32 (no I, L, O, U), 8 symbols = 40 bits.
# Guessing is bounded by expiry, single use and the per-address lock-out, not by entropy alone.
_PAIRING_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PAIRING_CODE_LENGTH = 8
_PAIRING_READ_AS = str.maketrans({"I": "1", "L": "1", "O": "0"})
_PAIRING_TYPED = re.compile(r"^[0-9A-Z]{8}$")


def new_pairing_code() -> str:
    """A fresh code as shown to a person: `XXXX-XXXX`."""
    raw = "".join(secrets.choice(_PAIRING_ALPHABET) for _ in range(PAIRING_CODE_LENGTH))
    return f"{raw[:4]}-{raw[4:]}"


def normalise_pairing_code(text: str) -> str | None:
    """The canonical form of a typed code (case, dashes and spaces ignored, I/L read as 1, O as 0),
    or None when it cannot be a code."""
    raw = "".join(text.split()).replace("-", "").upper().translate(_PAIRING_READ_AS)
    if not _PAIRING_TYPED.match(raw) or "U" in raw:
        return None
    return raw


def hash_pairing_code(pepper: bytes, canonical: str) -> bytes:
    # Domain-separated from token secrets: a code's digest can never equal a token's.
    return hmac.new(pepper, b"pairing-code:" + canonical.encode(), hashlib.sha256).digest()
