"""The clinic's onboarding operations as an HTTP JSON API (`/api/v1/...`, in the app's OpenAPI at
`/docs` and `/openapi.json`), for clinic IT scripts.

Authentication: `POST /api/v1/session` with an e-mail and password (the same accounts, lock-out and
sessions as the pages) returns a bearer token; send it as `Authorization: Bearer <token>`. A request
with the browser's session cookie instead must carry the session's CSRF token in `X-CSRF-Token`
for writes. Every request runs on the app role's connection with the caller's clinic set, so
row-level security confines it exactly as it confines the pages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from dashboards import records
from dashboards.auth import AuthError, Session, sign_in, sign_out
from dashboards.db import AppDb, Conn
from dashboards.settings import AppSettings
from ingest.enrolment import PairingCode
from rtm.settings import Settings


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str
    password: str


class SessionToken(BaseModel):
    token: str = Field(description="send as `Authorization: Bearer <token>`; ends at sign-out or expiry")
    staff_id: str
    clinic_id: str
    role: str
    expires_in_s: int


class EpisodeOut(BaseModel):
    episode_id: str
    discipline: str
    payer_policy: str
    diagnosis_codes: list[str]
    billing_practitioner_id: str | None
    start_date: date
    discharge_date: date | None
    consent_at: datetime | None
    plan_of_care_start: date | None
    plan_of_care_end: date | None
    setup_documented: bool


class PatientOut(BaseModel):
    patient_id: str
    external_ref: str | None
    tz: str | None
    episodes: list[EpisodeOut]


class Created(BaseModel):
    patient_id: str
    episode_id: str


class Changes(BaseModel):
    changes: list[str] = Field(description="each changed field with its old and new value (also in the audit log)")


class Discharge(BaseModel):
    model_config = ConfigDict(extra="forbid")
    on: date


class DeviceEnrolment(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    device_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="the device's serial")
    model_id: str
    body_site: str = "unknown"


def _field_problem(exc: records.FieldError) -> HTTPException:
    # The shape FastAPI gives request-validation errors, so that a script reads both alike.
    return HTTPException(422, [{"loc": ["body", exc.field], "msg": exc.message, "type": "value_error"}])


@contextmanager
def _edit_problems() -> Iterator[None]:
    """An edit's errors as HTTP problems: what it names is not there (404), a field is wrong (422)."""
    try:
        yield
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except records.FieldError as exc:
        raise _field_problem(exc) from None


def _patients(conn: Conn, patient_ids: list[str] | None) -> list[PatientOut]:
    rows = conn.execute(
        """select p.patient_id, p.external_ref,
                  (select tz from patient_timezones z where z.patient_id = p.patient_id order by effective_from desc limit 1)
             from patients p where %s::text[] is null or p.patient_id = any(%s) order by p.external_ref, p.patient_id""",
        (patient_ids, patient_ids),
    ).fetchall()
    eps: dict[str, list[EpisodeOut]] = {}
    for r in conn.execute(
        """select patient_id, episode_id, discipline, payer_policy, diagnosis_codes, billing_practitioner_id,
                  start_date, discharge_date, consent_at, plan_of_care_start, plan_of_care_end,
                  setup_documented_at is not null
             from episodes where %s::text[] is null or patient_id = any(%s) order by start_date""",
        (patient_ids, patient_ids),
    ):
        keys = list(EpisodeOut.model_fields)
        eps.setdefault(r[0], []).append(EpisodeOut(**dict(zip(keys, r[1:], strict=True))))
    return [PatientOut(patient_id=r[0], external_ref=r[1], tz=r[2], episodes=eps.get(r[0], [])) for r in rows]


def episode_patient(conn: Conn, episode_id: str) -> str:
    row = conn.execute("select patient_id from episodes where episode_id = %s", (episode_id,)).fetchone()
    if row is None:
        raise HTTPException(404, "no such episode in this clinic")
    return str(row[0])


def clinic_router(db: AppDb, a: AppSettings, s: Settings, pepper: bytes, policies: list[str],
                  caller: Callable[..., Session]) -> APIRouter:  # fmt: skip
    router = APIRouter(prefix="/api/v1", tags=["rtm-clinic"])


    def ip(request: Request) -> str | None:
        return request.client.host if request.client else None

    def onboarder(me: Session) -> None:
        if me.staff.role not in ("therapist", "admin"):
            raise HTTPException(403, "onboarding is for therapist and admin accounts")

    @router.post("/session", status_code=201)
    def open_session(request: Request, body: SignIn) -> SessionToken:
        """Sign in for scripts: the same accounts and lock-out as the sign-in page."""
        try:
            with db.anonymous() as conn:
                token, me = sign_in(conn, body.email, body.password, ip(request), a)
        except AuthError as exc:
            raise HTTPException(401, str(exc)) from None
        return SessionToken(token=token, staff_id=me.staff.staff_id, clinic_id=me.staff.clinic_id,
                            role=me.staff.role, expires_in_s=a.session_max_hours * 3600)  # fmt: skip

    @router.delete("/session", status_code=204)
    def close_session(request: Request, me: Session = Depends(caller)) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        with db.anonymous() as conn:
            sign_out(conn, token or request.cookies.get("rtm_session", ""))
        return Response(status_code=204)

    @router.get("/clinic/patients")
    def list_patients(request: Request, me: Session = Depends(caller)) -> list[PatientOut]:
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            out = _patients(conn, None)
            records.audit(conn, me.staff, "api list patients", [None], ip(request),
                          request.headers.get("user-agent"), f"{len(out)} patients")
        return out

    @router.get("/clinic/patients/{patient_id}")
    def get_patient(request: Request, patient_id: str, me: Session = Depends(caller)) -> PatientOut:
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            out = _patients(conn, [patient_id])
            if not out:
                raise HTTPException(404, "no such patient in this clinic")
            records.audit(conn, me.staff, "api view patient", [patient_id], ip(request),
                          request.headers.get("user-agent"))
        return out[0]

    @router.post("/clinic/patients", status_code=201)
    def create_patient(request: Request, body: records.PatientForm, me: Session = Depends(caller)) -> Created:
        """A patient and their first episode, saved together or not at all."""
        onboarder(me)
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            try:
                pid, eid = records.create_patient(conn, me.staff.clinic_id, body, policies)
            except records.FieldError as exc:
                raise _field_problem(exc) from None
            records.audit(conn, me.staff, "api create patient", [pid], ip(request), None, eid)
        return Created(patient_id=pid, episode_id=eid)

    @router.patch("/clinic/patients/{patient_id}")
    def edit_patient(request: Request, patient_id: str, body: records.PatientEdit, me: Session = Depends(caller)) -> Changes:
        onboarder(me)
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn, _edit_problems():
            return Changes(changes=records.edit_patient(conn, me.staff, patient_id, body, ip(request)))

    @router.post("/clinic/patients/{patient_id}/episodes", status_code=201)
    def create_episode(request: Request, patient_id: str, body: records.EpisodeForm, me: Session = Depends(caller)) -> Created:
        onboarder(me)
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            with _edit_problems():
                eid = records.create_episode(conn, me.staff.clinic_id, patient_id, body, policies)
            records.audit(conn, me.staff, "api create episode", [patient_id], ip(request), None, eid)
        return Created(patient_id=patient_id, episode_id=eid)

    @router.patch("/clinic/episodes/{episode_id}")
    def edit_episode(request: Request, episode_id: str, body: records.EpisodeEdit, me: Session = Depends(caller)) -> Changes:
        onboarder(me)
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn, _edit_problems():
            return Changes(changes=records.edit_episode(conn, me.staff, episode_id, body, policies, ip(request)))

    @router.post("/clinic/episodes/{episode_id}/prescriptions", status_code=201)
    def prescribe(request: Request, episode_id: str, body: records.PrescriptionForm, me: Session = Depends(caller)) -> Changes:
        """Add (or replace, for the same exercise and start date) a prescription of an open episode."""
        onboarder(me)
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            pid = episode_patient(conn, episode_id)
            records.add_prescription(conn, episode_id, body, me.staff.staff_id)
            what = f"{episode_id}: {body.exercise} {body.sets}x{body.reps}, {body.sessions_per_week}/week"
            records.audit(conn, me.staff, "api prescribe", [pid], ip(request), None, what)
        return Changes(changes=[what])

    @router.post("/clinic/episodes/{episode_id}/discharge")
    def discharge(request: Request, episode_id: str, body: Discharge, me: Session = Depends(caller)) -> Changes:
        onboarder(me)
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            pid = episode_patient(conn, episode_id)
            try:
                records.discharge(conn, episode_id, body.on)
            except ValueError as exc:
                raise HTTPException(409, str(exc)) from None
            records.audit(conn, me.staff, "api discharge", [pid], ip(request), None, f"{episode_id} on {body.on}")
        return Changes(changes=[f"discharge_date: None -> {body.on.isoformat()!r}"])

    @router.post("/clinic/episodes/{episode_id}/devices", status_code=201)
    def enrol_device(request: Request, episode_id: str, body: DeviceEnrolment, me: Session = Depends(caller)) -> PairingCode:
        """Enrol a device to the episode and issue its single-use pairing code (shown once)."""
        onboarder(me)
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            pid = episode_patient(conn, episode_id)
            try:
                records.check_pairing_request(conn, pid, episode_id, body.model_id)
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from None
        try:
            code = records.enrol_and_issue_pairing_code(
                s, pepper, me.staff.clinic_id, pid, episode_id, body.device_id, body.model_id, body.body_site,
                me.staff.staff_id, a.pairing_code_minutes * 60.0)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            records.audit(conn, me.staff, "api enrol device", [pid], ip(request), None, body.device_id)
        return code

    return router


def bearer_token(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    return value[7:].strip() or None if value[:7].lower() == "bearer " else None



