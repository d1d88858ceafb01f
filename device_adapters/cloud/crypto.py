"""Vendor OAuth tokens encrypted at rest: AES-256-GCM (NIST SP 800-38D) with a 96-bit random nonce
per message and the row's identity as associated data, so a ciphertext copied onto another
connection does not decrypt. Keys carry ids: the first key encrypts, every listed key decrypts,
so a key is rotated by putting a new one first and re-encrypting (`rtm vendor reencrypt`).

Keys come from `RTM_VENDOR_TOKEN_KEYS` ("kid:base64url-32-bytes,kid:..."); unset, the local stack
keeps generated keys in the state folder's secrets (created 0600), like the database passwords."""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
LOCAL_KEYS_FILE = "vendor_token_keys"


class TokenKeyError(ValueError):
    """A key list that cannot be used, or a ciphertext no configured key opens."""


def _parse(spec: str) -> list[tuple[str, bytes]]:
    keys: list[tuple[str, bytes]] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        kid, sep, b64 = part.partition(":")
        if not sep or not kid:
            raise TokenKeyError("a vendor token key must be written 'key_id:base64url_key'")
        try:
            key = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
        except ValueError:
            raise TokenKeyError(f"vendor token key {kid!r} is not base64url") from None
        if len(key) != 32:
            raise TokenKeyError(f"vendor token key {kid!r} must be 32 bytes (AES-256), not {len(key)}")
        keys.append((kid, key))
    if not keys:
        raise TokenKeyError("no vendor token key configured")
    if len({k for k, _ in keys}) != len(keys):
        raise TokenKeyError("vendor token key ids must be unique")
    return keys


def new_key_spec(kid: str) -> str:
    return f"{kid}:{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip('=')}"


@dataclass(frozen=True)
class TokenCipher:
    keys: tuple[tuple[str, bytes], ...]

    @classmethod
    def from_spec(cls, spec: str) -> TokenCipher:
        return cls(tuple(_parse(spec)))

    @property
    def active_key_id(self) -> str:
        return self.keys[0][0]

    def encrypt(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        kid, key = self.keys[0]
        nonce = secrets.token_bytes(NONCE_BYTES)
        return kid, nonce + AESGCM(key).encrypt(nonce, plaintext, aad)

    def decrypt(self, kid: str, blob: bytes, aad: bytes) -> bytes:
        key = dict(self.keys).get(kid)
        if key is None:
            raise TokenKeyError(f"vendor token key {kid!r} is not configured (was it retired too early?)")
        try:
            return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag:
            raise TokenKeyError(f"a token under key {kid!r} does not authenticate (tampered or moved)") from None


def local_key_spec(secrets_dir: Path) -> str:
    """The local stack's keys, made on first use (0600 from the first byte)."""
    path = secrets_dir / LOCAL_KEYS_FILE
    if not path.exists():
        secrets_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(new_key_spec("k1"))
    return path.read_text().strip()


def rotate_local_keys(secrets_dir: Path) -> str:
    """Put a new key first in the local key file; returns its id. Old keys stay for decryption."""
    spec = local_key_spec(secrets_dir)
    ids = [k for k, _ in _parse(spec)]
    n = 1 + max((int(k[1:]) for k in ids if k.startswith("k") and k[1:].isdigit()), default=0)
    kid = f"k{n}"
    path = secrets_dir / LOCAL_KEYS_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new_key_spec(kid) + "," + spec)
    tmp.replace(path)
    return kid
