"""The therapists' review queue: read open flags, acknowledge, resolve (pydantic at this boundary).

Acknowledge and resolve name the person (`by`); the audit trigger records them with the time.
Pass `clinic_id` from the caller's authenticated context so that nobody acts on another clinic's
flag. Reads of patient data by a person must be audit-logged by the HTTP layer that serves them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from flags.model import Kind, Resolution, Severity, State
from rtm.db import Conn


class FlagView(BaseModel):
    model_config = ConfigDict(frozen=True)

    flag_id: int
    patient_id: str
    clinic_id: str
    episode_id: str | None
    kind: Kind
    severity: Severity
    state: State
    evidence: dict[str, Any]
    raised_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: Resolution | None


class FlagAuditEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    audit_id: int
    flag_id: int
    at: datetime
    actor: str
    action: str
    from_state: State | None
    to_state: State
    severity: Severity
    note: str | None


class FlagNotFound(LookupError):
    pass


class FlagStateError(ValueError):
    pass


_VIEW = """flag_id, patient_id, clinic_id, episode_id, kind, severity, state, evidence, raised_at, updated_at,
    acknowledged_at, acknowledged_by, resolved_at, resolved_by, resolution"""
_SEVERITY_ORDER = "case severity when 'high' then 3 when 'medium' then 2 else 1 end desc"


def _view(row: tuple[Any, ...]) -> FlagView:
    return FlagView(**dict(zip(FlagView.model_fields, row, strict=True)))


def open_flags(
    conn: Conn, clinic_id: str, *, include_acknowledged: bool = False, limit: int = 500
) -> list[FlagView]:
    """A clinic's queue: most severe first, then oldest first."""
    states = ["open", "acknowledged"] if include_acknowledged else ["open"]
    rows = conn.execute(
        f"""select {_VIEW} from therapist_flags
             where clinic_id = %s and state = any(%s)
             order by {_SEVERITY_ORDER}, raised_at, flag_id
             limit %s""",
        (clinic_id, states, limit),
    ).fetchall()
    return [_view(r) for r in rows]


def get_flag(conn: Conn, flag_id: int, *, clinic_id: str | None = None) -> FlagView:
    row = conn.execute(f"select {_VIEW} from therapist_flags where flag_id = %s", (flag_id,)).fetchone()
    if row is None or (clinic_id is not None and row[2] != clinic_id):
        raise FlagNotFound(f"no flag {flag_id}")
    return _view(row)


def _act(
    conn: Conn, flag_id: int, by: str, note: str | None, clinic_id: str | None, update: str
) -> FlagView | None:
    if not by:
        raise ValueError("say who acts (by)")
    with conn.transaction():
        conn.execute(
            "select set_config('rtm.actor', %s, true), set_config('rtm.note', %s, true)", (by, note or "")
        )
        row = conn.execute(
            f"{update} and (%s::text is null or clinic_id = %s) returning {_VIEW}",
            (by, flag_id, clinic_id, clinic_id),
        ).fetchone()
        conn.execute("select set_config('rtm.actor', '', true), set_config('rtm.note', '', true)")
    return _view(row) if row else None


def acknowledge(
    conn: Conn, flag_id: int, by: str, *, note: str | None = None, clinic_id: str | None = None
) -> FlagView:
    """Seen and being handled: the flag leaves the open queue and will not re-alert unless its
    severity worsens. Acknowledging an acknowledged flag changes nothing; a resolved one is an error."""
    done = _act(
        conn, flag_id, by, note, clinic_id,
        """update therapist_flags
              set state = 'acknowledged', acknowledged_at = now(), acknowledged_by = %s,
                  acknowledged_severity = severity
            where flag_id = %s and state = 'open'""",
    )  # fmt: skip
    if done is not None:
        return done
    current = get_flag(conn, flag_id, clinic_id=clinic_id)
    if current.state is State.RESOLVED:
        raise FlagStateError(f"flag {flag_id} is resolved")
    return current


def resolve(
    conn: Conn, flag_id: int, by: str, *, note: str | None = None, clinic_id: str | None = None
) -> FlagView:
    """Closed by a person. While the condition persists at no worse severity it is not raised again;
    once re-evaluation sees it clear, a recurrence is a new flag. Resolving twice is an error."""
    done = _act(
        conn, flag_id, by, note, clinic_id,
        """update therapist_flags
              set state = 'resolved', resolved_at = now(), resolved_by = %s, resolution = 'manual',
                  resolved_severity = severity, condition_cleared_at = null
            where flag_id = %s and state <> 'resolved'""",
    )  # fmt: skip
    if done is not None:
        return done
    get_flag(conn, flag_id, clinic_id=clinic_id)  # raises FlagNotFound
    raise FlagStateError(f"flag {flag_id} is already resolved")


def flag_audit(conn: Conn, flag_id: int) -> list[FlagAuditEntry]:
    """Every state and severity change of a flag, oldest first: who, when, from what to what."""
    rows = conn.execute(
        """select audit_id, flag_id, at, actor, action, from_state, to_state, severity, note
             from therapist_flag_audit where flag_id = %s order by audit_id""",
        (flag_id,),
    ).fetchall()
    return [FlagAuditEntry(**dict(zip(FlagAuditEntry.model_fields, r, strict=True))) for r in rows]
