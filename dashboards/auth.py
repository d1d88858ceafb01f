"""Staff accounts, passwords (argon2id), server-side sessions, CSRF tokens and lock-out."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dashboards.settings import AppSettings

Conn = psycopg.Connection[Any]
StaffRole = Literal["therapist", "assistant", "biller", "admin"]
_HASHER = PasswordHasher()  # argon2id with the library's RFC 9106 defaults
# Verifying against this keeps an unknown e-mail as slow as a wrong password (no account probing).
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
_NPI = re.compile(r"^\d{10}$")


class AuthError(ValueError):
    """A sign-in refused, with the reason shown to the person."""


class NewStaff(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    staff_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    clinic_id: str
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=200)
    display_name: str = Field(min_length=1, max_length=120)
    role: StaffRole
    discipline: Literal["PT", "OT", "SLP"] | None = None
    npi: str | None = None
    password: str = Field(min_length=12, max_length=256, description="at least 12 characters")

    @field_validator("npi")
    @classmethod
    def _npi(cls, v: str | None) -> str | None:
        if v is not None and not _npi_valid(v):
            raise ValueError("an NPI is 10 digits with a valid check digit")
        return v

    def model_post_init(self, _: Any) -> None:
        if self.role == "therapist" and (self.npi is None or self.discipline is None):
            raise ValueError("a therapist needs a discipline (PT, OT, SLP) and an NPI")
        if self.role == "assistant" and self.discipline is None:
            raise ValueError("an assistant needs a discipline (PTA: PT, OTA: OT)")


def _npi_valid(npi: str) -> bool:
    """NPI check digit: Luhn over the 9 digits prefixed by 80840 (CMS NPI standard, 2005)."""
    if not _NPI.match(npi):
        return False
    digits = [int(c) for c in "80840" + npi[:9]]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return (10 - total % 10) % 10 == int(npi[9])


def npi_with_check_digit(first9: str) -> str:
    """A valid NPI from nine digits (for demo and test accounts)."""
    for last in "0123456789":
        if _npi_valid(first9 + last):
            return first9 + last
    raise ValueError(first9)


@dataclass(frozen=True)
class Staff:
    staff_id: str
    clinic_id: str
    email: str
    display_name: str
    role: StaffRole
    discipline: str | None
    npi: str | None

    @property
    def clinical(self) -> bool:
        """Therapists and assistants log time and act on flags; billers and admins do not treat."""
        return self.role in ("therapist", "assistant")


@dataclass(frozen=True)
class Session:
    staff: Staff
    csrf_token: str


_STAFF_COLS = "s.staff_id, s.clinic_id, s.email, s.display_name, s.role, s.discipline, s.npi"


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def create_staff(conn: Conn, new: NewStaff) -> Staff:
    """A staff account; therapists and assistants are practitioners too (same id), in one transaction."""
    with conn.transaction():
        conn.execute(
            """insert into app_staff (staff_id, clinic_id, email, display_name, role, discipline, npi, password_hash)
               values (%s, %s, %s, %s, %s, %s, %s, %s)""",
            (new.staff_id, new.clinic_id, new.email.lower(), new.display_name, new.role, new.discipline, new.npi,
             hash_password(new.password)),
        )  # fmt: skip
        if new.role in ("therapist", "assistant"):
            conn.execute(
                """insert into practitioners (practitioner_id, clinic_id, role, discipline, display_name)
                   values (%s, %s, %s, %s, %s) on conflict (practitioner_id) do nothing""",
                (new.staff_id, new.clinic_id, new.role, new.discipline, new.display_name),
            )
    return Staff(new.staff_id, new.clinic_id, new.email.lower(), new.display_name, new.role, new.discipline, new.npi)


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def sign_in(conn: Conn, email: str, password: str, ip: str | None, s: AppSettings) -> tuple[str, Session]:
    """Check the password; return (cookie token, session). Failures count towards a lock-out."""
    now = datetime.now(UTC)
    with conn.transaction():
        row = conn.execute(
            f"""select {_STAFF_COLS}, s.password_hash, s.failed_attempts, s.locked_until, s.disabled_at
                  from app_staff s where s.email = %s for update""",
            (email.strip().lower(),),
        ).fetchone()
        if row is None:
            _verify(_DUMMY_HASH, password)
            raise AuthError("wrong e-mail or password")
        staff = Staff(*row[:7])
        pw_hash, failed, locked_until, disabled = row[7:]
        if disabled is not None:
            raise AuthError("this account is disabled")
        if locked_until is not None and locked_until > now:
            raise AuthError(f"too many failed sign-ins: the account is locked until {locked_until:%H:%M} UTC")
        if not _verify(pw_hash, password):
            failed += 1
            lock = now + timedelta(minutes=s.lockout_minutes) if failed >= s.lockout_failures else None
            conn.execute(
                "update app_staff set failed_attempts = %s, locked_until = %s where staff_id = %s",
                (0 if lock else failed, lock, staff.staff_id),
            )
            refused = (f"too many failed sign-ins: the account is locked for {s.lockout_minutes} minutes" if lock
                       else "wrong e-mail or password")
        else:
            refused = None
    if refused is not None:  # raised after the commit: the failure must count
        raise AuthError(refused)
    with conn.transaction():
        new_hash = _HASHER.hash(password) if _HASHER.check_needs_rehash(pw_hash) else pw_hash
        conn.execute(
            "update app_staff set failed_attempts = 0, locked_until = null, password_hash = %s where staff_id = %s",
            (new_hash, staff.staff_id),
        )
        return start_session(conn, staff, ip, s)


def start_session(conn: Conn, staff: Staff, ip: str | None, s: AppSettings) -> tuple[str, Session]:
    """A new server-side session of a person already authenticated (password or identity provider)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    conn.execute(
        """insert into app_sessions (session_hash, staff_id, csrf_token, expires_at, ip)
           values (%s, %s, %s, %s, %s)""",
        (_token_hash(token), staff.staff_id, csrf, datetime.now(UTC) + timedelta(hours=s.session_max_hours), ip),
    )
    return token, Session(staff, csrf)


def staff_by_id(conn: Conn, staff_id: str) -> tuple[Staff, bool] | None:
    """A staff account and whether it is active."""
    row = conn.execute(f"select {_STAFF_COLS}, s.disabled_at is null from app_staff s where s.staff_id = %s",
                       (staff_id,)).fetchone()
    return (Staff(*row[:7]), bool(row[7])) if row else None


def _verify(pw_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(pw_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def session(conn: Conn, token: str, s: AppSettings) -> Session | None:
    """The live session of a cookie token (idle and absolute expiry), touching its last use."""
    with conn.transaction():
        row = conn.execute(
            f"""update app_sessions x set last_seen_at = now()
                  from app_staff s
                 where x.session_hash = %s and s.staff_id = x.staff_id and x.ended_at is null
                   and x.expires_at > now() and x.last_seen_at > now() - make_interval(mins => %s)
                   and s.disabled_at is null
             returning {_STAFF_COLS}, x.csrf_token""",
            (_token_hash(token), s.session_idle_minutes),
        ).fetchone()
    if row is None:
        return None
    return Session(Staff(*row[:7]), row[7])


def sign_out(conn: Conn, token: str) -> None:
    with conn.transaction():
        conn.execute("update app_sessions set ended_at = now() where session_hash = %s", (_token_hash(token),))


def csrf_ok(session: Session, sent: str | None) -> bool:
    return sent is not None and secrets.compare_digest(session.csrf_token, sent)


def change_password(conn: Conn, staff_id: str, current: str, new: str, keep_token: str) -> None:
    """The person's own password change (e.g. from an admin's temporary one): the current password
    is checked, the new one is at least 12 characters; every other session of theirs ends."""
    if not 12 <= len(new) <= 256:
        raise AuthError("the new password needs at least 12 characters")
    with conn.transaction():
        row = conn.execute("select password_hash from app_staff where staff_id = %s for update",
                           (staff_id,)).fetchone()  # fmt: skip
        if row is None or not _verify(row[0], current):
            raise AuthError("the current password is wrong")
        conn.execute("update app_staff set password_hash = %s where staff_id = %s", (hash_password(new), staff_id))
        conn.execute(
            "update app_sessions set ended_at = now() where staff_id = %s and ended_at is null and session_hash <> %s",
            (staff_id, _token_hash(keep_token)),
        )
