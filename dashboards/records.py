"""What the pages read and write, as plain functions of a clinic-scoped connection (row-level
security confines every query to the signed-in person's clinic; the clinic_id filters below only
help the planner). Every read of a patient's data goes through `audit`."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import available_timezones

import psycopg
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from dashboards.auth import Staff
from flags.model import Kind
from ingest.enrolment import PairingCode
from rtm.settings import Settings

Conn = psycopg.Connection[Any]
_ICD10 = re.compile(r"^[A-TV-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")
# Pairing codes: 8 symbols of an alphabet without look-alikes (0/O, 1/I/L): 32^8 = 2^40 codes.
_ZONES = available_timezones()


def audit(conn: Conn, staff: Staff, action: str, patient_ids: Sequence[str | None], ip: str | None,
          user_agent: str | None = None, detail: str | None = None) -> None:  # fmt: skip
    """Append who read what, when and from where (one row per patient; None: no single patient)."""
    conn.execute(
        """insert into app_audit_log (clinic_id, staff_id, patient_id, action, detail, ip, user_agent)
           select %s, %s, p, %s, %s, %s, %s from unnest(%s::text[]) as p""",
        (staff.clinic_id, staff.staff_id, action, detail, ip, (user_agent or "")[:300], list(patient_ids)),
    )


# ------------------------------------------------------------------------------ onboarding -------


def _valid_tz(v: str) -> str:
    if v not in _ZONES:
        raise ValueError(f"{v!r} is not an IANA time zone (e.g. America/New_York)")
    return v


def _valid_codes(v: object) -> object:
    if isinstance(v, str):
        v = [c.strip().upper() for c in re.split(r"[,\s]+", v) if c.strip()]
    if isinstance(v, list):
        bad = [c for c in v if not _ICD10.match(str(c))]
        if bad:
            raise ValueError(f"not ICD-10-CM codes: {', '.join(map(str, bad))} (e.g. M17.11)")
    return v


class EpisodeEdit(BaseModel):
    """What can change of an episode (its start and discharge have their own operations)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    discipline: Literal["PT", "OT", "SLP"]
    payer_policy: str = Field(min_length=1, max_length=64)
    diagnosis_codes: list[str] = Field(min_length=1, description="ICD-10-CM codes")
    billing_practitioner_id: str = Field(min_length=1)
    consent_date: date | None = None
    plan_of_care_start: date | None = None
    plan_of_care_end: date | None = None
    setup_documented: bool = False

    @field_validator("diagnosis_codes", mode="before")
    @classmethod
    def _codes(cls, v: object) -> object:
        return _valid_codes(v)

    @field_validator("plan_of_care_end")
    @classmethod
    def _dates(cls, v: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("plan_of_care_start")
        if v is not None and start is not None and v < start:
            raise ValueError("the plan of care ends before it starts")
        return v


class EpisodeForm(EpisodeEdit):
    """An episode of care of a patient of the clinic (a form's other fields, e.g. its CSRF token,
    are ignored)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    start_date: date


class PatientEdit(BaseModel):
    """What can change of a patient: the EMR's id and the time zone (from now on; days already
    past keep the zone they were lived in)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    external_ref: str = Field(min_length=1, max_length=64, description="MRN or the EMR's id")
    tz: str = Field(description="IANA time zone, e.g. America/Chicago")

    @field_validator("tz")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _valid_tz(v)


class PatientForm(EpisodeForm, PatientEdit):
    """A patient and their first episode of care, saved together or not at all."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class FieldError(ValueError):
    """A value refused by a check against the database, naming its field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def _check_episode_refs(conn: Conn, clinic_id: str, payer_policy: str, billing_practitioner_id: str,
                        policies: Sequence[str]) -> None:  # fmt: skip
    if payer_policy not in policies:
        raise FieldError("payer_policy", f"unknown payer policy {payer_policy!r}; choose from {', '.join(policies)}")
    row = conn.execute(
        "select 1 from practitioners where practitioner_id = %s and clinic_id = %s and role = 'therapist'",
        (billing_practitioner_id, clinic_id),
    ).fetchone()
    if row is None:
        raise FieldError("billing_practitioner_id", "the billing practitioner must be a therapist of this clinic")


def _midnight(d: date | None) -> datetime | None:
    return datetime.combine(d, datetime.min.time(), tzinfo=UTC) if d else None


def create_patient(conn: Conn, clinic_id: str, form: PatientForm, policies: Sequence[str]) -> tuple[str, str]:
    _check_episode_refs(conn, clinic_id, form.payer_policy, form.billing_practitioner_id, policies)
    if conn.execute("select 1 from patients where clinic_id = %s and external_ref = %s",
                    (clinic_id, form.external_ref)).fetchone():
        raise FieldError("external_ref", f"a patient with external id {form.external_ref!r} already exists")
    patient_id = f"pt-{uuid.uuid4().hex[:12]}"
    start = datetime.combine(form.start_date, datetime.min.time(), tzinfo=UTC)
    with conn.transaction():
        conn.execute("insert into patients (patient_id, clinic_id, external_ref) values (%s, %s, %s)",
                     (patient_id, clinic_id, form.external_ref))
        episode_id = _insert_episode(conn, clinic_id, patient_id, form)
        conn.execute("insert into patient_timezones (patient_id, effective_from, tz) values (%s, %s, %s)",
                     (patient_id, start - timedelta(days=1), form.tz))
    return patient_id, episode_id


def _insert_episode(conn: Conn, clinic_id: str, patient_id: str, form: EpisodeForm) -> str:
    episode_id = f"ep-{uuid.uuid4().hex[:12]}"
    conn.execute(
        """insert into episodes (episode_id, patient_id, clinic_id, payer_policy, discipline,
               billing_practitioner_id, start_date, setup_date, setup_documented_at, consent_at,
               plan_of_care_start, plan_of_care_end, diagnosis_codes)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (episode_id, patient_id, clinic_id, form.payer_policy, form.discipline, form.billing_practitioner_id,
         form.start_date, form.start_date if form.setup_documented else None,
         datetime.now(UTC) if form.setup_documented else None, _midnight(form.consent_date),
         form.plan_of_care_start, form.plan_of_care_end, form.diagnosis_codes),
    )  # fmt: skip
    return episode_id


def create_episode(conn: Conn, clinic_id: str, patient_id: str, form: EpisodeForm, policies: Sequence[str]) -> str:
    """A further episode of a patient of this clinic (row-level security hides any other's)."""
    if conn.execute("select 1 from patients where patient_id = %s", (patient_id,)).fetchone() is None:
        raise LookupError("no such patient in this clinic")
    _check_episode_refs(conn, clinic_id, form.payer_policy, form.billing_practitioner_id, policies)
    if conn.execute("select 1 from episodes where patient_id = %s and discharge_date is null",
                    (patient_id,)).fetchone():
        raise FieldError("start_date", "the patient has an open episode: discharge it first")
    with conn.transaction():
        return _insert_episode(conn, clinic_id, patient_id, form)


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f"{k}: {old[k]!r} -> {new[k]!r}" for k in new if old.get(k) != new[k]]


def edit_patient(conn: Conn, staff: Staff, patient_id: str, form: PatientEdit, ip: str | None) -> list[str]:
    """Change the patient's id at the EMR and time zone; the change and the old values go to the
    audit log in the same transaction. Returns the changes (empty: nothing changed)."""
    with conn.transaction():
        row = conn.execute(
            """select p.external_ref, (select tz from patient_timezones z where z.patient_id = p.patient_id
                                         order by effective_from desc limit 1)
                 from patients p where p.patient_id = %s for update""", (patient_id,)).fetchone()  # fmt: skip
        if row is None:
            raise LookupError("no such patient in this clinic")
        changes = _changes({"external_ref": row[0], "tz": row[1]}, form.model_dump())
        if not changes:
            return []
        if form.external_ref != row[0]:
            if conn.execute("select 1 from patients where clinic_id = %s and external_ref = %s and patient_id <> %s",
                            (staff.clinic_id, form.external_ref, patient_id)).fetchone():
                raise FieldError("external_ref", f"another patient has external id {form.external_ref!r}")
            conn.execute("update patients set external_ref = %s where patient_id = %s",
                         (form.external_ref, patient_id))
        if form.tz != row[1]:
            conn.execute("insert into patient_timezones (patient_id, effective_from, tz) values (%s, now(), %s)",
                         (patient_id, form.tz))
        audit(conn, staff, "edit patient", [patient_id], ip, None, "; ".join(changes))
    return changes


def edit_episode(conn: Conn, staff: Staff, episode_id: str, form: EpisodeEdit, policies: Sequence[str],
                 ip: str | None) -> list[str]:  # fmt: skip
    """Change an episode's fields in one transaction with its audit row. Returns the changes."""
    with conn.transaction():
        row = conn.execute(
            """select patient_id, discipline, payer_policy, diagnosis_codes, billing_practitioner_id,
                      consent_at::date, plan_of_care_start, plan_of_care_end, setup_documented_at is not null
                 from episodes where episode_id = %s for update""", (episode_id,)).fetchone()  # fmt: skip
        if row is None:
            raise LookupError("no such episode in this clinic")
        _check_episode_refs(conn, staff.clinic_id, form.payer_policy, form.billing_practitioner_id, policies)
        keys = ("discipline", "payer_policy", "diagnosis_codes", "billing_practitioner_id", "consent_date",
                "plan_of_care_start", "plan_of_care_end", "setup_documented")
        changes = _changes(dict(zip(keys, row[1:], strict=True)), form.model_dump())
        if not changes:
            return []
        conn.execute(
            """update episodes set discipline = %s, payer_policy = %s, diagnosis_codes = %s,
                      billing_practitioner_id = %s,
                      consent_at = case when %s::date is null then null
                                        when consent_at::date = %s::date then consent_at else %s end,
                      plan_of_care_start = %s, plan_of_care_end = %s,
                      setup_date = case when %s then coalesce(setup_date, current_date) end,
                      setup_documented_at = case when %s then coalesce(setup_documented_at, now()) end,
                      updated_at = now()
                where episode_id = %s""",
            (form.discipline, form.payer_policy, form.diagnosis_codes, form.billing_practitioner_id,
             form.consent_date, form.consent_date, _midnight(form.consent_date), form.plan_of_care_start,
             form.plan_of_care_end, form.setup_documented, form.setup_documented, episode_id),
        )  # fmt: skip
        audit(conn, staff, "edit episode", [row[0]], ip, None, f"{episode_id}: " + "; ".join(changes))
    return changes


def current_tz(conn: Conn, patient_id: str) -> str | None:
    row = conn.execute("select tz from patient_timezones where patient_id = %s order by effective_from desc limit 1",
                       (patient_id,)).fetchone()
    return str(row[0]) if row else None


class PrescriptionForm(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    exercise: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    sets: int = Field(ge=1, le=20)
    reps: int = Field(ge=1, le=200)
    sessions_per_week: int = Field(ge=0, le=21, description="days per week; 0 stops the exercise")
    target_rom_deg: float | None = Field(default=None, gt=0, le=360)
    effective_from: date


def add_prescription(conn: Conn, episode_id: str, form: PrescriptionForm, by: str) -> None:
    conn.execute(
        """insert into exercise_prescriptions (episode_id, exercise, effective_from, sessions_per_week, sets, reps,
               target_rom_deg, prescribed_by) values (%s, %s, %s, %s, %s, %s, %s, %s)
           on conflict (episode_id, exercise, effective_from) do update
              set sessions_per_week = excluded.sessions_per_week, sets = excluded.sets, reps = excluded.reps,
                  target_rom_deg = excluded.target_rom_deg, prescribed_by = excluded.prescribed_by""",
        (episode_id, form.exercise, form.effective_from, form.sessions_per_week, form.sets, form.reps,
         form.target_rom_deg, by),
    )  # fmt: skip


def discharge(conn: Conn, episode_id: str, on: date) -> None:
    row = conn.execute(
        """update episodes set discharge_date = %s, updated_at = now()
            where episode_id = %s and discharge_date is null and start_date <= %s returning 1""",
        (on, episode_id, on),
    ).fetchone()
    if row is None:
        raise ValueError("the episode is already discharged, or the date is before its start")


def check_pairing_request(conn: Conn, patient_id: str, episode_id: str, model_id: str) -> None:
    """On the clinic's own connection (row-level security): the episode is this clinic's, this
    patient's and open, and the model is known. Raises ValueError with the reason."""
    ep = conn.execute("select patient_id, discharge_date from episodes where episode_id = %s",
                      (episode_id,)).fetchone()
    if ep is None or ep[0] != patient_id:
        raise ValueError("no such episode for this patient")
    if ep[1] is not None:
        raise ValueError("the episode is discharged")
    if conn.execute("select 1 from device_models where model_id = %s", (model_id,)).fetchone() is None:
        raise ValueError(f"unknown device model {model_id!r}")


def enrol_and_issue_pairing_code(settings: Settings, pepper: bytes, clinic_id: str, patient_id: str,
                                 episode_id: str, device_id: str, model_id: str, body_site: str, by: str,
                                 ttl_s: float) -> PairingCode:  # fmt: skip
    """Enrol the device to the episode through the gateway's own enrolment (credential and
    assignment event, as `rtm enrol device` does), unless it already is, then issue the single-use
    code its hub redeems for the credential (`POST /v1/pairing`, `rtm hub pair`)."""
    import asyncio

    from ingest.enrolment import Emitter, EnrolmentRequest, enrol, issue_pairing_code_on
    from ingest.problems import Problem
    from ingest.store import Store

    async def run() -> PairingCode:
        store = await Store.open(settings, max_size=1, role="writer")
        try:
            async with store.pool.connection() as conn:
                cur = await conn.execute(
                    """select patient_id, episode_id, clinic_id from ingest_device_credentials
                        where device_id = %s and revoked_at is null""", (device_id,))
                live = await cur.fetchone()
            if live is None:
                req = EnrolmentRequest(patient_id=patient_id, episode_id=episode_id, device_id=device_id,
                                       model_id=model_id, body_site=body_site)
                await enrol(store, Emitter(None, outbox=True), pepper, clinic_id, req, created_by=by)
            elif tuple(live) != (patient_id, episode_id, clinic_id):
                raise ValueError("this device is enrolled to another episode; revoke that enrolment first")
            async with store.pool.connection() as conn, conn.transaction():
                return await issue_pairing_code_on(conn, pepper, clinic_id, device_id, ttl_s, created_by=by)
        except Problem as exc:
            raise ValueError(exc.detail) from None
        finally:
            await store.close()

    return asyncio.run(run())


# ------------------------------------------------------------------------------ queue ------------

REASONS: dict[str, str] = {
    Kind.ADHERENCE_FALLING: "Exercising less often than prescribed",
    Kind.NO_DATA: "No data from the device",
    Kind.REPS_BELOW_DOSE: "Fewer repetitions than prescribed",
    Kind.ROM_TREND: "Range of motion stalled or regressing",
    Kind.ROM_DROP: "Sudden drop in range of motion",
}


def reason_in_words(kind: str, evidence: dict[str, Any]) -> str:
    """The flag's kind in words, with the evidence's own message when the evaluator wrote one."""
    base = REASONS.get(kind, kind.replace("_", " "))
    for key in ("reason", "message", "summary"):
        if isinstance(evidence.get(key), str):
            return f"{base}: {evidence[key]}"
    bits = []
    for key, label in (("done", "done"), ("expected", "expected"), ("days_silent", "days without data"),
                       ("share", "share"), ("slope_deg_per_week", "°/week")):  # fmt: skip
        if isinstance(evidence.get(key), int | float):
            bits.append(f"{label} {evidence[key]:g}")
    return base + (f" ({', '.join(bits)})" if bits else "")


@dataclass(frozen=True)
class QueueItem:
    flag_id: int
    patient_id: str
    external_ref: str | None
    kind: str
    severity: str
    state: str
    raised_at: datetime
    reason: str
    daily: list[float | None]


def queue(conn: Conn, clinic_id: str, days: int = 28, limit: int = 100) -> tuple[list[QueueItem], int]:
    """Open flags not snoozed, most severe then oldest, with each patient's daily exercise sets; and
    how many there are in all (counted in the same statement: the window runs before the limit)."""
    rows = conn.execute(
        """select f.flag_id, f.patient_id, p.external_ref, f.kind, f.severity, f.state, f.raised_at, f.evidence,
                  count(*) over ()
             from therapist_flags f join patients p using (patient_id)
            where f.clinic_id = %s and f.state = 'open'
              and not exists (select 1 from app_flag_snoozes s where s.flag_id = f.flag_id and s.until > now())
            order by case f.severity when 'high' then 3 when 'medium' then 2 else 1 end desc, f.raised_at, f.flag_id
            limit %s""",
        (clinic_id, limit),
    ).fetchall()
    pids = sorted({r[1] for r in rows})
    series = daily_sets(conn, pids, days)
    items = [QueueItem(r[0], r[1], r[2], r[3], r[4], r[5], r[6], reason_in_words(r[3], r[7] or {}),
                       series.get(r[1], [None] * days)) for r in rows]  # fmt: skip
    return items, int(rows[0][8]) if rows else 0


def daily_sets(conn: Conn, patient_ids: Sequence[str], days: int) -> dict[str, list[float | None]]:
    """Exercise sets per patient-local day over the last `days` days (None: no valid data that day)."""
    today = date.today()
    first = today - timedelta(days=days - 1)
    out: dict[str, list[float | None]] = {p: [None] * days for p in patient_ids}
    if not patient_ids:
        return out
    for pid, d, sets in conn.execute(
        """select patient_id, local_date, sum(exercise_sets) from app_data_day_facts
            where patient_id = any(%s) and local_date >= %s and local_date <= %s and qualifying
            group by patient_id, local_date""",
        (list(patient_ids), first, today),
    ):
        out[pid][(d - first).days] = float(sets)
    return out


# Vendor-cloud connections (migration 0940: the app reads their health, never their tokens).
VENDOR_NAMES: dict[str, str] = {"polar": "Polar", "google": "Google Health", "oura": "Oura",
                                "withings": "Withings", "garmin": "Garmin"}  # fmt: skip
_STATUS_WORDS: dict[str, str] = {
    "reauthorization_required": "needs the patient to reconnect: the vendor no longer accepts our access",
    "revoked": "access revoked at the vendor: needs the patient to reconnect",
    "disconnected": "disconnected: no longer synced",
}


@dataclass(frozen=True)
class VendorConnection:
    vendor: str
    patient_id: str
    external_ref: str | None
    device_id: str
    status: str
    token_expires_at: datetime | None
    synced_through: date | None
    last_success_at: datetime | None
    last_error_at: datetime | None
    last_error: str | None
    created_at: datetime
    problem: bool  # the therapist must act (or at least know): re-authorisation, revocation, silence
    words: str

    @property
    def vendor_name(self) -> str:
        return VENDOR_NAMES.get(self.vendor, self.vendor)


def connection_in_words(status: str, last_success_at: datetime | None, created_at: datetime, now: datetime,
                        silent_days: int) -> tuple[bool, str]:  # fmt: skip
    """A connection's state in words and whether it is a problem: not active (except a deliberate
    disconnection), or active without a successful sync for `silent_days` (counted from the
    connection's creation when it never synced, so a new one is not silent at once)."""
    if status != "active":
        return status != "disconnected", _STATUS_WORDS.get(status, status.replace("_", " "))
    days = (now - (last_success_at or created_at)).days
    if days < silent_days:
        return False, "syncing"
    if last_success_at is None:
        return True, f"no successful sync since it was connected {days} days ago"
    return True, f"no successful sync for {days} days"


_CONNECTIONS_SQL = """
    select v.vendor, v.patient_id, p.external_ref, v.device_id, v.status, v.token_expires_at, v.synced_through,
           v.last_success_at, v.last_error_at, v.last_error, v.created_at
      from app_vendor_connections v join patients p using (patient_id)"""


def _connection(r: Sequence[Any], now: datetime, silent_days: int) -> VendorConnection:
    problem, words = connection_in_words(r[4], r[7], r[10], now, silent_days)
    return VendorConnection(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], problem, words)


def vendor_connections(conn: Conn, patient_id: str, silent_days: int,
                       now: datetime | None = None) -> list[VendorConnection]:  # fmt: skip
    """The patient's vendor-cloud connections with their health in words, problems first."""
    now = now or datetime.now(UTC)
    rows = conn.execute(_CONNECTIONS_SQL + " where v.patient_id = %s order by v.vendor, v.created_at",
                        (patient_id,)).fetchall()  # fmt: skip
    found = [_connection(r, now, silent_days) for r in rows]
    return sorted(found, key=lambda c: not c.problem)


def connection_problems(conn: Conn, clinic_id: str, silent_days: int,
                        now: datetime | None = None) -> list[VendorConnection]:  # fmt: skip
    """The clinic's connections that need attention (re-authorisation, revoked, silent for
    `silent_days`), of live enrolments: needing the patient first, then the longest silent."""
    now = now or datetime.now(UTC)
    rows = conn.execute(
        _CONNECTIONS_SQL + """
         where v.clinic_id = %s and v.enrolment_revoked_at is null and v.status <> 'disconnected'
           and (v.status <> 'active' or coalesce(v.last_success_at, v.created_at) <= %s - make_interval(days => %s))
         order by v.status = 'active', coalesce(v.last_success_at, v.created_at), v.vendor, v.patient_id""",
        (clinic_id, now, silent_days),
    ).fetchall()
    return [c for c in (_connection(r, now, silent_days) for r in rows) if c.problem]


def snooze(conn: Conn, clinic_id: str, flag_id: int, hours: int, by: str) -> None:
    row = conn.execute("select 1 from therapist_flags where flag_id = %s", (flag_id,)).fetchone()
    if row is None:
        raise LookupError(f"no flag {flag_id}")
    conn.execute(
        """insert into app_flag_snoozes (flag_id, clinic_id, until, by_staff) values (%s, %s, now() + make_interval(hours => %s), %s)
           on conflict (flag_id) do update set until = excluded.until, by_staff = excluded.by_staff, created_at = now()""",
        (flag_id, clinic_id, hours, by),
    )


def minutes_this_month(conn: Conn, patient_id: str, month: date) -> Decimal:
    row = conn.execute(
        """select coalesce(sum(e.minutes), 0) from therapist_time_entries e
            where e.patient_id = %s and e.voided_at is null
              and not exists (select 1 from therapist_time_entries c where c.supersedes = e.entry_id)
              and date_trunc('month', coalesce(e.service_date, e.started_at::date)) = %s""",
        (patient_id, month),
    ).fetchone()
    return Decimal(row[0]) if row else Decimal(0)


@dataclass(frozen=True)
class BillingRow:
    patient_id: str
    patient: str  # external id (MRN), else our id
    kind: str
    period: str
    codes: str  # e.g. "98977 98980 -GP" (units shown when more than one)
    status: str
    reason: str
    gates_failed: str


def _codes_text(codes: list[dict[str, Any]]) -> str:
    return " ".join(str(c["code"]) + (f" \u00d7{c['units']}" if c.get("units", 1) > 1 else "")
                    + (" -" + "-".join(c["modifiers"]) if c.get("modifiers") else "") for c in codes) or "\u2014"


def billing_rows(conn: Conn, clinic_id: str, month: date) -> list[BillingRow]:
    """The month's results as the billing view shows them (about 1,000 rows for 500 patients), in one
    statement: the codes are the stored answer's (parsed by orjson, `db.py`), the failed gates their
    own column (migration 0841), so no explanation document is read and no model is validated."""
    rows = conn.execute(
        """select r.patient_id, coalesce(p.external_ref, r.patient_id), r.kind, r.period_start, r.period_end,
                  r.answer->'codes', r.status, r.reason, r.gates_failed
             from eligibility_results r join patients p using (patient_id)
            where r.clinic_id = %s and r.bill_month = %s order by r.patient_id, r.result_key""",
        (clinic_id, month.replace(day=1)),
    ).fetchall()
    return [BillingRow(r[0], r[1], r[2], f"{r[3]} \u2013 {r[4]}", _codes_text(r[5]), r[6], r[7],
                       ", ".join(r[8]) or "\u2014") for r in rows]  # fmt: skip
