"""Staff management by the clinic's admin: list, invite, change role, deactivate, reset password.

The staff table has no row-level security (sign-in reads it before any clinic is known), so every
function here takes the admin's clinic and confines itself to it. Each change is written to the
audit log in the same transaction."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dashboards.auth import Conn, NewStaff, Staff, StaffRole, _npi_valid, create_staff, hash_password
from dashboards.records import audit


class StaffError(ValueError):
    """A staff change refused, naming the field (or 'form')."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class StaffRow:
    staff_id: str
    email: str
    display_name: str
    role: str
    discipline: str | None
    npi: str | None
    active: bool
    locked_until: datetime | None
    oidc_bound: bool
    created_at: datetime


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    role: StaffRole
    discipline: Literal["PT", "OT", "SLP"] | None = None
    npi: str | None = None

    @field_validator("npi")
    @classmethod
    def _npi(cls, v: str | None) -> str | None:
        if v is not None and not _npi_valid(v):
            raise ValueError("an NPI is 10 digits with a valid check digit")
        return v

    @model_validator(mode="after")
    def _needs(self) -> RoleChange:
        if self.role == "therapist" and (self.npi is None or self.discipline is None):
            raise ValueError("a therapist needs a discipline (PT, OT, SLP) and an NPI")
        if self.role == "assistant" and self.discipline is None:
            raise ValueError("an assistant needs a discipline (PTA: PT, OTA: OT)")
        return self


class Invite(RoleChange):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=200)
    display_name: str = Field(min_length=1, max_length=120)


def temporary_password() -> str:
    """A one-time password the admin hands over (about 120 bits)."""
    return secrets.token_urlsafe(15)


def list_staff(conn: Conn, clinic_id: str) -> list[StaffRow]:
    rows = conn.execute(
        """select staff_id, email, display_name, role, discipline, npi, disabled_at is null, locked_until,
                  oidc_subject is not null, created_at
             from app_staff where clinic_id = %s order by disabled_at is not null, display_name""", (clinic_id,))
    return [StaffRow(*r) for r in rows]


def _staff_id(conn: Conn, email: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", email.split("@")[0])[:48] or "staff"
    candidate = base
    while conn.execute("select 1 from app_staff where staff_id = %s", (candidate,)).fetchone():
        candidate = f"{base}-{secrets.token_hex(3)}"
    return candidate


def invite(conn: Conn, admin: Staff, form: Invite, ip: str | None) -> tuple[Staff, str]:
    """Create an account in the admin's clinic with a temporary password (returned, shown once)."""
    password = temporary_password()
    with conn.transaction():
        if conn.execute("select 1 from app_staff where email = %s", (form.email.lower(),)).fetchone():
            raise StaffError("email", f"{form.email} already has an account")
        new = NewStaff(staff_id=_staff_id(conn, form.email), clinic_id=admin.clinic_id, email=form.email,
                       display_name=form.display_name, role=form.role, discipline=form.discipline, npi=form.npi,
                       password=password)  # fmt: skip
        staff = create_staff(conn, new)
        audit(conn, admin, "staff invite", [None], ip, None, f"{staff.staff_id} as {staff.role}")
    return staff, password


def _own(conn: Conn, admin: Staff, staff_id: str) -> tuple[Any, ...]:
    row = conn.execute(
        "select role, discipline, npi, disabled_at from app_staff where staff_id = %s and clinic_id = %s for update",
        (staff_id, admin.clinic_id),
    ).fetchone()
    if row is None:
        raise LookupError("no such staff member in this clinic")
    return tuple(row)


def _end_sessions(conn: Conn, staff_id: str) -> int:
    cur = conn.execute("update app_sessions set ended_at = now() where staff_id = %s and ended_at is null",
                       (staff_id,))
    return cur.rowcount


def change_role(conn: Conn, admin: Staff, staff_id: str, change: RoleChange, ip: str | None) -> None:
    with conn.transaction():
        old = _own(conn, admin, staff_id)
        if staff_id == admin.staff_id and change.role != "admin":
            raise StaffError("role", "you cannot take the admin role from yourself (another admin can)")
        conn.execute("update app_staff set role = %s, discipline = %s, npi = %s where staff_id = %s",
                     (change.role, change.discipline, change.npi, staff_id))
        if change.role in ("therapist", "assistant"):  # practitioners keep their history: never deleted
            conn.execute(
                """insert into practitioners (practitioner_id, clinic_id, role, discipline, display_name)
                   select staff_id, clinic_id, role, discipline, display_name from app_staff where staff_id = %s
                   on conflict (practitioner_id) do update set role = excluded.role, discipline = excluded.discipline""",
                (staff_id,),
            )
        # New rights take effect at the next sign-in; ending the sessions makes that now.
        _end_sessions(conn, staff_id)
        audit(conn, admin, "staff role", [None], ip, None,
              f"{staff_id}: {old[0]} -> {change.role} ({change.discipline or '-'}, NPI {change.npi or '-'})")


def deactivate(conn: Conn, admin: Staff, staff_id: str, ip: str | None) -> int:
    """Disable the account and end every session of it now. Returns the sessions ended."""
    with conn.transaction():
        old = _own(conn, admin, staff_id)
        if staff_id == admin.staff_id:
            raise StaffError("form", "you cannot deactivate your own account")
        if old[3] is not None:
            raise StaffError("form", "the account is already deactivated")
        conn.execute("update app_staff set disabled_at = now() where staff_id = %s", (staff_id,))
        ended = _end_sessions(conn, staff_id)
        audit(conn, admin, "staff deactivate", [None], ip, None, f"{staff_id} ({ended} sessions ended)")
    return ended


def reactivate(conn: Conn, admin: Staff, staff_id: str, ip: str | None) -> None:
    with conn.transaction():
        _own(conn, admin, staff_id)
        conn.execute("update app_staff set disabled_at = null where staff_id = %s", (staff_id,))
        audit(conn, admin, "staff reactivate", [None], ip, None, staff_id)


def reset_password(conn: Conn, admin: Staff, staff_id: str, ip: str | None) -> str:
    """A new temporary password (returned, shown once); the lock-out is cleared and sessions end."""
    password = temporary_password()
    with conn.transaction():
        _own(conn, admin, staff_id)
        conn.execute(
            """update app_staff set password_hash = %s, failed_attempts = 0, locked_until = null
                where staff_id = %s""", (hash_password(password), staff_id))  # fmt: skip
        _end_sessions(conn, staff_id)
        audit(conn, admin, "staff reset password", [None], ip, None, staff_id)
    return password
