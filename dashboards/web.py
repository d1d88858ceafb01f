"""The clinic web app: FastAPI, Jinja2 templates and htmx (vendored), server-side SVG.

Every page that shows patient data runs in one database transaction as the app role with the
signed-in person's clinic set (row-level security does the confining) and appends to the audit
log. Forms carry the session's CSRF token; every POST checks it."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html import escape as esc
from pathlib import Path
from typing import Any

import segno
from fastapi import Depends, FastAPI, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import ValidationError

from dashboards import alerts, charts, claims, oidc, records, staff
from dashboards.api import bearer_token, clinic_router
from dashboards.auth import AuthError, Session, change_password, csrf_ok, session, sign_in, sign_out, start_session
from dashboards.db import AppDb, Conn
from dashboards.settings import AppSettings, get_app_settings
from eligibility import api as elig_api
from eligibility import billing, timeentries
from eligibility.engine import management_lines
from eligibility.policy import available_policies, load_policy
from eligibility.store import recompute_patients
from flags import review
from flags.trends import theil_sen
from ingest.settings import get_gateway_settings
from rtm.contract import TimeActivity, TimeChannel
from rtm.db import connect
from rtm.settings import Settings, get_settings

HERE = Path(__file__).resolve().parent
COOKIE = "rtm_session"
OIDC_COOKIE = "rtm_oidc_state"
CLINICAL = ("therapist", "assistant")


class SignInNeeded(Exception):
    pass


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Each refused field with its message (the first per field); model-level ones under 'form'."""
    out: dict[str, str] = {}
    for e in exc.errors():
        key = str(e["loc"][0]) if e["loc"] else "form"
        out.setdefault(key, str(e["msg"]).removeprefix("Value error, "))
    return out


def create_app(settings: Settings | None = None, app_settings: AppSettings | None = None) -> FastAPI:
    s = settings or get_settings()
    a = app_settings or get_app_settings()
    db = AppDb(s, a.pool_max)
    pepper = get_gateway_settings().pepper_bytes(s.secrets_dir, s.environment)
    policies = sorted(available_policies())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        db.open()
        yield
        db.close()

    app = FastAPI(title="RTM clinic app", lifespan=lifespan)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    app.state.db = db

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(SignInNeeded)
    async def _to_login(request: Request, _: SignInNeeded) -> Response:
        if request.headers.get("HX-Request"):
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        return RedirectResponse("/login", status_code=303)

    def who(request: Request) -> Session:
        token = request.cookies.get(COOKIE)
        if not token:
            raise SignInNeeded()
        with db.anonymous() as conn:
            found = session(conn, token, a)
        if found is None:
            raise SignInNeeded()
        return found

    async def checked(request: Request, me: Session = Depends(who)) -> Session:
        """A POST from this session's own pages: the CSRF token in the form or the htmx header."""
        sent = request.headers.get("X-CSRF-Token")
        if sent is None:
            form = await request.form()
            value = form.get("csrf")
            sent = value if isinstance(value, str) else None
        if not csrf_ok(me, sent):
            raise HTTPException(403, "the form is stale or forged (CSRF check failed): reload the page")
        return me

    def need(me: Session, *roles: str) -> None:
        if me.staff.role not in roles:
            raise HTTPException(403, f"this page is for {', '.join(roles)} accounts")

    def clinic_conn(me: Session) -> Iterator[Conn]:
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            yield conn

    def ip(request: Request) -> str | None:
        return request.client.host if request.client else None

    def page(request: Request, name: str, me: Session | None, **ctx: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"me": me, **ctx})

    # ------------------------------------------------------------------ sign-in ----------------
    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> HTMLResponse:
        return page(request, "login.html", None, error=None, oidc_label=a.oidc_label if a.oidc_enabled else None)

    @app.post("/login")
    def login(request: Request, email: str = Form(...), password: str = Form(...)) -> Response:
        try:
            with db.anonymous() as conn:
                token, _me = sign_in(conn, email, password, ip(request), a)
        except AuthError as exc:
            return templates.TemplateResponse(request, "login.html", {"me": None, "error": str(exc)}, status_code=401)
        resp = RedirectResponse("/", status_code=303)
        _set_session_cookie(resp, token)
        return resp

    def _set_session_cookie(resp: Response, token: str) -> None:
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=a.secure_cookies,
                        max_age=a.session_max_hours * 3600)

    @app.get("/login/oidc")
    def login_oidc(request: Request) -> Response:
        if not a.oidc_enabled:
            raise HTTPException(404, "sign-in with an identity provider is not configured")
        try:
            with db.anonymous() as conn:
                url, state = oidc.begin(conn, a)
        except AuthError as exc:
            return templates.TemplateResponse(request, "login.html", {"me": None, "error": str(exc)}, status_code=502)
        resp = RedirectResponse(url, status_code=303)
        # Lax: the provider's redirect back is a cross-site top-level GET, which Lax cookies survive.
        resp.set_cookie(OIDC_COOKIE, state, httponly=True, samesite="lax", secure=a.secure_cookies,
                        max_age=a.oidc_login_minutes * 60, path="/login/oidc")
        return resp

    @app.get("/login/oidc/callback")
    def login_oidc_callback(request: Request, state: str = "", code: str = "", error: str = "",
                            error_description: str = "") -> Response:  # fmt: skip
        if not a.oidc_enabled:
            raise HTTPException(404, "sign-in with an identity provider is not configured")
        try:
            if error:
                raise AuthError(f"the identity provider refused the sign-in: {error} {error_description}".strip())
            with db.anonymous() as conn:
                me_staff = oidc.finish(conn, a, state, code, request.cookies.get(OIDC_COOKIE))
                with conn.transaction():
                    token, _me = start_session(conn, me_staff, ip(request), a)
        except AuthError as exc:
            resp: Response = templates.TemplateResponse(
                request, "login.html", {"me": None, "error": str(exc), "oidc_label": a.oidc_label}, status_code=401)
            resp.delete_cookie(OIDC_COOKIE, path="/login/oidc")
            return resp
        # A page of our own leads on: a Strict session cookie is not sent on a redirect chain that a
        # cross-site navigation started, so the next request must start on this site.
        resp = HTMLResponse('<!doctype html><html lang="en"><head><meta charset="utf-8">'
                            '<meta http-equiv="refresh" content="0;url=/"><title>Signed in · RTM clinic</title></head>'
                            '<body><main><p>Signed in. <a href="/">Continue</a></p></main></body></html>')
        _set_session_cookie(resp, token)
        resp.delete_cookie(OIDC_COOKIE, path="/login/oidc")
        return resp

    @app.post("/logout")
    def logout(request: Request, me: Session = Depends(checked)) -> Response:
        with db.anonymous() as conn:
            sign_out(conn, request.cookies.get(COOKIE, ""))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    @app.get("/")
    def home(me: Session = Depends(who)) -> Response:
        target = {"biller": "/billing", "admin": "/patients"}.get(me.staff.role, "/queue")
        return RedirectResponse(target, status_code=303)

    # ------------------------------------------------------------------ queue ------------------
    @app.get("/queue", response_class=HTMLResponse)
    def queue_page(request: Request, limit: int = 100, me: Session = Depends(who)) -> HTMLResponse:
        need(me, *CLINICAL, "admin")
        limit = max(1, min(limit, 1000))  # the most urgent first; a longer list on request
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            items, total = records.queue(conn, me.staff.clinic_id, limit=limit)
            connections = records.connection_problems(conn, me.staff.clinic_id, a.silent_device_days)
            shown = {i.patient_id for i in items} | {c.patient_id for c in connections}
            records.audit(conn, me.staff, "view queue", sorted(shown), ip(request), request.headers.get("user-agent"))
        sparks = {i.flag_id: charts.sparkline(i.daily, f"exercise sets per day, last {len(i.daily)} days")
                  for i in items}
        return page(request, "queue.html", me, items=items, sparks=sparks, now=datetime.now(UTC),
                    total=total, limit=limit, connections=connections)

    def _flag_action(request: Request, me: Session, flag_id: int, action: str, note: str | None,
                     hours: int | None) -> Response:  # fmt: skip
        need(me, *CLINICAL)
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            try:
                if action == "ack":
                    review.acknowledge(conn, flag_id, me.staff.staff_id, note=note, clinic_id=me.staff.clinic_id)
                elif action == "resolve":
                    review.resolve(conn, flag_id, me.staff.staff_id, note=note, clinic_id=me.staff.clinic_id)
                else:
                    records.snooze(conn, me.staff.clinic_id, flag_id, hours or a.snooze_default_hours,
                                   me.staff.staff_id)
            except (review.FlagNotFound, LookupError):
                raise HTTPException(404, "no such flag in this clinic") from None
            except review.FlagStateError as exc:
                raise HTTPException(409, str(exc)) from None
        if request.headers.get("HX-Request"):
            return HTMLResponse(f'<tr><td colspan="6" role="status">Flag {flag_id}: done ({action}).</td></tr>')
        return RedirectResponse(request.headers.get("referer") or "/queue", status_code=303)

    @app.post("/flags/{flag_id}/ack")
    def ack(request: Request, flag_id: int, me: Session = Depends(checked)) -> Response:
        return _flag_action(request, me, flag_id, "ack", None, None)

    @app.post("/flags/{flag_id}/resolve")
    def resolve(request: Request, flag_id: int, note: str = Form(""),
                me: Session = Depends(checked)) -> Response:
        return _flag_action(request, me, flag_id, "resolve", note or None, None)

    @app.post("/flags/{flag_id}/snooze")
    def snooze(request: Request, flag_id: int, hours: int = Form(24),
               me: Session = Depends(checked)) -> Response:
        return _flag_action(request, me, flag_id, "snooze", None, max(1, min(hours, 24 * 14)))

    # ------------------------------------------------------------------ patients ---------------
    @app.get("/patients", response_class=HTMLResponse)
    def patients(request: Request, me: Session = Depends(who)) -> HTMLResponse:
        need(me, *CLINICAL, "admin")
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            rows = conn.execute(
                """select p.patient_id, p.external_ref, e.episode_id, e.discipline, e.discharge_date,
                          (select count(*) from therapist_flags f where f.patient_id = p.patient_id
                             and f.state = 'open') as open_flags
                     from patients p left join lateral (
                          select * from episodes e where e.patient_id = p.patient_id
                           order by e.start_date desc limit 1) e on true
                    order by p.external_ref nulls last, p.patient_id limit 1000"""
            ).fetchall()
            records.audit(conn, me.staff, "list patients", [None], ip(request), request.headers.get("user-agent"),
                          f"{len(rows)} patients")
        return page(request, "patients.html", me, rows=rows)

    def _therapists(conn: Conn, clinic_id: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in conn.execute(
            "select practitioner_id, display_name from practitioners where clinic_id = %s and role = 'therapist'"
            " order by display_name", (clinic_id,))]  # fmt: skip

    @app.get("/patients/new", response_class=HTMLResponse)
    def new_patient_form(request: Request, me: Session = Depends(who)) -> HTMLResponse:
        need(me, "therapist", "admin")
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            therapists = _therapists(conn, me.staff.clinic_id)
        return page(request, "patient_new.html", me, therapists=therapists, policies=policies, errors=[],
                    form={"start_date": date.today().isoformat(), "payer_policy": "medicare-2026", "tz": "UTC"})

    @app.post("/patients/new", response_class=HTMLResponse)
    async def new_patient(request: Request, me: Session = Depends(checked)) -> Response:
        need(me, "therapist", "admin")
        raw = dict((await request.form()).items())
        data: dict[str, Any] = {k: (v if isinstance(v, str) and v != "" else None) for k, v in raw.items()}
        data["setup_documented"] = raw.get("setup_documented") == "on"
        errors: list[str] = []
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            try:
                form = records.PatientForm.model_validate({k: v for k, v in data.items() if v is not None})
                pid, _ = records.create_patient(conn, me.staff.clinic_id, form, policies)
            except ValidationError as exc:
                errors = [f"{'.'.join(map(str, e['loc'])) or 'form'}: {e['msg']}" for e in exc.errors()]
            except ValueError as exc:
                errors = [str(exc)]
            if errors:
                therapists = _therapists(conn, me.staff.clinic_id)
        if errors:
            return templates.TemplateResponse(request, "patient_new.html", {
                "me": me, "therapists": therapists, "policies": policies, "errors": errors,
                "form": {k: v for k, v in raw.items() if k != "csrf"}}, status_code=422)  # fmt: skip
        return RedirectResponse(f"/patients/{pid}", status_code=303)

    def _patient(conn: Conn, patient_id: str) -> tuple[Any, ...]:
        row = conn.execute("select patient_id, external_ref, created_at from patients where patient_id = %s",
                           (patient_id,)).fetchone()
        if row is None:  # another clinic's patient is invisible: exactly like one that does not exist
            raise HTTPException(404, "no such patient in this clinic")
        return tuple(row)

    @app.get("/patients/{patient_id}", response_class=HTMLResponse)
    def patient_page(request: Request, patient_id: str, me: Session = Depends(who)) -> HTMLResponse:
        need(me, *CLINICAL, "admin")
        today = date.today()
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            patient = _patient(conn, patient_id)
            records.audit(conn, me.staff, "view patient", [patient_id], ip(request), request.headers.get("user-agent"))
            ctx = _patient_context(conn, patient_id, today)
        return page(request, "patient.html", me, patient=patient, **ctx)

    def _patient_context(conn: Conn, patient_id: str, today: date) -> dict[str, Any]:
        episodes = conn.execute(
            """select episode_id, discipline, payer_policy, start_date, discharge_date, consent_at,
                      plan_of_care_start, plan_of_care_end, diagnosis_codes, billing_practitioner_id
                 from episodes where patient_id = %s order by start_date desc""", (patient_id,)).fetchall()
        prescriptions = conn.execute(
            """select x.episode_id, x.exercise, x.effective_from, x.sessions_per_week, x.sets, x.reps, x.target_rom_deg
                 from exercise_prescriptions x join episodes e using (episode_id)
                where e.patient_id = %s order by x.exercise, x.effective_from desc""", (patient_id,)).fetchall()
        devices = conn.execute(
            """select a.device_id, a.body_site, a.valid_from, a.valid_to,
                      (select max(f.local_date) from app_data_day_facts f where f.patient_id = a.patient_id
                          and f.device_id = a.device_id) as last_day
                 from device_assignments a where a.patient_id = %s order by a.valid_from desc""",
            (patient_id,)).fetchall()
        pending = conn.execute(
            """select c.device_id, c.expires_at, c.redeemed_at from ingest_pairing_codes c
                 join ingest_device_credentials d on d.device_id = c.device_id and d.revoked_at is null
                where d.patient_id = %s order by c.created_at desc limit 5""", (patient_id,)).fetchall()
        flags = conn.execute(
            """select flag_id, kind, severity, state, raised_at, resolved_at, evidence from therapist_flags
                where patient_id = %s order by flag_id desc limit 30""", (patient_id,)).fetchall()
        since = today - timedelta(days=90)
        sets = conn.execute(
            """select time, exercise, rep_count, rom_median_deg from app_exercise_sets
                where patient_id = %s and time >= %s order by time""", (patient_id, since)).fetchall()
        days = conn.execute(
            """select local_date, bool_or(qualifying), sum(steps), sum(wear_minutes) from app_data_day_facts
                where patient_id = %s and local_date >= %s group by local_date order by local_date""",
            (patient_id, since)).fetchall()  # fmt: skip
        supply = conn.execute(
            """select period_start, period_end, data_days, reason, codes from eligibility_results
                where patient_id = %s and kind = 'supply' and period_start <= %s order by period_start desc limit 1""",
            (patient_id, today)).fetchone()
        month = today.replace(day=1)
        minutes = records.minutes_this_month(conn, patient_id, month)
        policy_id = episodes[0][2] if episodes else "medicare-2026"
        try:
            _, _, minutes_text = management_lines(load_policy(policy_id), minutes)
        except Exception:  # an unknown policy: the billing view names it
            minutes_text = f"{minutes} min"
        entries = timeentries.list_entries(conn, patient_id, month=month)
        timer = conn.execute(
            "select timer_id, started_at from therapist_timers where patient_id = %s and stopped_at is null",
            (patient_id,)).fetchone()  # fmt: skip
        # ROM per set over time, trend (Theil-Sen, as the flags use) and the prescription's target.
        rom = [(r[0], float(r[3])) for r in sets if r[3] is not None]
        rom_chart = None
        if rom:
            t0 = rom[0][0]
            xs = [(t - t0).total_seconds() / 86400 for t, _ in rom]
            ys = [v for _, v in rom]
            fit = theil_sen(ys, xs) if len(rom) >= 3 else None
            target = next((float(p[6]) for p in prescriptions if p[6] is not None), None)
            rom_chart = charts.scatter_trend(
                xs, ys, f"range of motion per set over {xs[-1]:.0f} days, with trend and target",
                slope=fit.slope if fit else None, intercept=fit.intercept if fit else None, target=target)
        steps_chart = charts.bars([float(d[2] or 0) for d in days], "steps per day") if days else None
        # Active minutes (the step processor's per-minute classification) over the last week, summed
        # in the database: a week of minutes is at most about 10,000 rows of one patient.
        active_week = conn.execute(
            """select count(*) filter (where active) from app_activity_minutes
                where patient_id = %s and time >= now() - interval '7 days'""", (patient_id,)).fetchone()
        calendar = _calendar(supply, {d[0]: bool(d[1]) for d in days}, today)
        connections = records.vendor_connections(conn, patient_id, a.silent_device_days)
        return {"episodes": episodes, "prescriptions": prescriptions, "devices": devices, "pending": pending,
                "connections": connections,
                "flags": [(*f[:6], records.reason_in_words(f[1], f[6] or {})) for f in flags],
                "sets": sets[-20:], "rom_chart": rom_chart, "steps_chart": steps_chart, "calendar": calendar,
                "active_week": int(active_week[0]) if active_week else 0,
                "supply": supply, "minutes": minutes, "minutes_text": minutes_text, "entries": entries,
                "timer": timer, "activities": list(TimeActivity), "channels": list(TimeChannel),
                "today": today, "silent_days": a.silent_device_days,
                "models": conn.execute("select model_id, name from device_models order by name").fetchall()}  # fmt: skip

    def _calendar(supply: Any, qualifying: dict[date, bool], today: date) -> dict[str, Any] | None:
        if supply is None:
            return None
        start, end, data_days = supply[0], supply[1], supply[2] or 0
        cells = []
        d = start
        while d <= end:
            cells.append({"date": d, "done": qualifying.get(d, False), "future": d > today})
            d += timedelta(days=1)
        left = max((end - today).days, 0)
        return {"cells": cells, "text": f"{data_days} of {(end - start).days + 1} days with data, {left} days left",
                "reason": supply[3]}

    @app.post("/patients/{patient_id}/prescriptions")
    async def prescribe(request: Request, patient_id: str, me: Session = Depends(checked)) -> Response:
        need(me, "therapist", "admin")
        form = dict((await request.form()).items())
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            _patient(conn, patient_id)
            try:
                rx = records.PrescriptionForm.model_validate({k: v for k, v in form.items() if v != ""})
                episode = str(form.get("episode_id", ""))
                _own_episode(conn, patient_id, episode)
                records.add_prescription(conn, episode, rx, me.staff.staff_id)
            except ValidationError as exc:
                raise HTTPException(422, "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from None
        return RedirectResponse(f"/patients/{patient_id}", status_code=303)

    def _own_episode(conn: Conn, patient_id: str, episode_id: str) -> None:
        if conn.execute("select 1 from episodes where episode_id = %s and patient_id = %s",
                        (episode_id, patient_id)).fetchone() is None:
            raise HTTPException(404, "no such episode of this patient")

    @app.post("/patients/{patient_id}/discharge")
    def discharge(request: Request, patient_id: str, episode_id: str = Form(...), on: date = Form(...),
                  me: Session = Depends(checked)) -> Response:
        need(me, "therapist", "admin")
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            _own_episode(conn, patient_id, episode_id)
            try:
                records.discharge(conn, episode_id, on)
            except ValueError as exc:
                raise HTTPException(409, str(exc)) from None
        return RedirectResponse(f"/patients/{patient_id}", status_code=303)

    @app.post("/patients/{patient_id}/pair", response_class=HTMLResponse)
    def pair(request: Request, patient_id: str, episode_id: str = Form(...), device_id: str = Form(...),
             model_id: str = Form(...), body_site: str = Form("unknown"),
             me: Session = Depends(checked)) -> Response:
        need(me, "therapist", "admin")
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            patient = _patient(conn, patient_id)
            try:
                records.check_pairing_request(conn, patient_id, episode_id, model_id)
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from None
        try:
            code = records.enrol_and_issue_pairing_code(
                s, pepper, me.staff.clinic_id, patient_id, episode_id, device_id.strip(), model_id, body_site,
                me.staff.staff_id, a.pairing_code_minutes * 60.0)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        qr = segno.make(f"rtm-pair:{code.code}", error="m")
        svg = Markup(qr.svg_inline(scale=5, title=f"QR code of pairing code {code.code}"))
        return page(request, "pairing.html", me, patient=patient, code=code, qr=svg, device_id=device_id)

    # ------------------------------------------------------------------ time -------------------
    def _recompute(patient_id: str) -> None:
        """Feed the eligibility engine now (the worker would within its interval), so that the page
        and the billing view show the codes the new minutes earn."""
        with connect("writer", s, autocommit=True) as w:
            recompute_patients(w, [patient_id], date.today())

    def _episode_of(conn: Conn, patient_id: str) -> str:
        row = conn.execute("""select episode_id from episodes where patient_id = %s and discharge_date is null
                               order by start_date desc limit 1""", (patient_id,)).fetchone()
        if row is None:
            raise HTTPException(409, "the patient has no open episode")
        return str(row[0])

    @app.post("/patients/{patient_id}/time")
    def log_time(request: Request, patient_id: str, minutes: Decimal = Form(...), activity: str = Form(...),
                 channel: str = Form(...), started_at: str = Form(""),
                 me: Session = Depends(checked)) -> Response:
        need(me, *CLINICAL)
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            _patient(conn, patient_id)
            try:
                # Without a start, the minutes are taken to end now (the person logs what they just did).
                start = (datetime.fromisoformat(started_at).replace(tzinfo=UTC) if started_at
                         else datetime.now(UTC) - timedelta(minutes=float(minutes)))
                entry = timeentries.NewTimeEntry(
                    patient_id=patient_id, episode_id=_episode_of(conn, patient_id),
                    practitioner_id=me.staff.staff_id, activity=TimeActivity(activity),
                    channel=TimeChannel(channel), started_at=start, minutes=minutes)  # fmt: skip
                timeentries.add_entry(conn, entry, actor=me.staff.staff_id)
            except (ValidationError, ValueError) as exc:
                raise HTTPException(422, str(exc)) from None
        _recompute(patient_id)
        return RedirectResponse(f"/patients/{patient_id}#time", status_code=303)

    @app.post("/patients/{patient_id}/timer")
    def timer(request: Request, patient_id: str, op: str = Form(...), activity: str = Form("data_review"),
              channel: str = Form("none"), me: Session = Depends(checked)) -> Response:
        need(me, *CLINICAL)
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            _patient(conn, patient_id)
            try:
                if op == "start":
                    timeentries.start_timer(conn, timeentries.TimerStart(
                        patient_id=patient_id, episode_id=_episode_of(conn, patient_id),
                        practitioner_id=me.staff.staff_id, activity=TimeActivity(activity),
                        channel=TimeChannel(channel)), actor=me.staff.staff_id)  # fmt: skip
                else:
                    timeentries.stop_timer(conn, practitioner_id=me.staff.staff_id, actor=me.staff.staff_id)
            except (ValidationError, ValueError) as exc:
                raise HTTPException(409, str(exc)) from None
        if op != "start":
            _recompute(patient_id)
        return RedirectResponse(f"/patients/{patient_id}#time", status_code=303)

    # ------------------------------------------------------------------ billing ----------------
    def _month(text: str | None) -> date:
        if not text:
            return date.today().replace(day=1)
        try:
            return date.fromisoformat(text + "-01")
        except ValueError:
            raise HTTPException(400, f"month {text!r} is not YYYY-MM") from None

    @app.get("/billing", response_class=HTMLResponse)
    def billing_page(request: Request, month: str | None = None, me: Session = Depends(who)) -> HTMLResponse:
        need(me, "biller", "admin")
        m = _month(month)
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            rows = records.billing_rows(conn, me.staff.clinic_id, m)
            amended = billing.amendments(conn, me.staff.clinic_id, datetime.combine(m, datetime.min.time(), UTC))
            records.audit(conn, me.staff, "view billing", sorted({r.patient_id for r in rows}), ip(request),
                          request.headers.get("user-agent"), m.isoformat())
        return page(request, "billing.html", me, tbody=_billing_tbody(rows), month=m, amended=amended)

    def _billing_tbody(rows: list[records.BillingRow]) -> Markup:
        """The table's rows as markup built here: a month is about 1,000 rows for 500 patients, and the template engine's
        per-cell escaping and loop cost more than all of the page's database work."""
        if not rows:
            return Markup('<tr><td colspan="7">No results for this month yet.</td></tr>')
        return Markup("\n".join(
            f"<tr><td>{esc(r.patient)}</td><td>{esc(r.kind)}</td><td>{esc(r.period)}</td>"
            f'<td class="cpt">{esc(r.codes)}</td><td>{esc(r.status)}</td><td>{esc(r.reason)}</td>'
            f"<td>{esc(r.gates_failed)}</td></tr>" for r in rows))

    @app.get("/billing/claims.csv")
    def claims_csv(request: Request, month: str | None = None, me: Session = Depends(who)) -> Response:
        need(me, "biller", "admin")
        m = _month(month)
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            lines = claims.claim_lines(conn, me.staff.clinic_id, m)
            records.audit(conn, me.staff, "export claims csv", sorted({ln.patient_id for ln in lines}),
                          ip(request), request.headers.get("user-agent"), m.isoformat())
        return Response(claims.to_csv(lines), media_type="text/csv; charset=utf-8; header=present",
                        headers={"Content-Disposition": f'attachment; filename="claims-{m:%Y-%m}.csv"'})

    @app.get("/billing/claims.fhir.json")
    def claims_fhir(request: Request, month: str | None = None, me: Session = Depends(who)) -> Response:
        need(me, "biller", "admin")
        m = _month(month)
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            bundle = claims.fhir_bundle(conn, me.staff.clinic_id, m)
            records.audit(conn, me.staff, "export claims fhir", [None], ip(request),
                          request.headers.get("user-agent"), m.isoformat())
        return Response(bundle, media_type="application/fhir+json",
                        headers={"Content-Disposition": f'attachment; filename="claims-{m:%Y-%m}.fhir.json"'})

    # ------------------------------------------------------------------ edit patient, episode --
    def _therapist_options(conn: Conn, clinic_id: str) -> list[tuple[str, str]]:
        return _therapists(conn, clinic_id)

    def _form_data(raw: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {k: v for k, v in raw.items() if k != "csrf" and isinstance(v, str) and v != ""}
        return data

    @app.get("/patients/{patient_id}/edit", response_class=HTMLResponse)
    def edit_patient_form(request: Request, patient_id: str, me: Session = Depends(who)) -> HTMLResponse:
        need(me, "therapist", "admin")
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            patient = _patient(conn, patient_id)
            tz = records.current_tz(conn, patient_id)
        return page(request, "patient_edit.html", me, patient_id=patient_id, errors={},
                    form={"external_ref": patient[1], "tz": tz})

    @app.post("/patients/{patient_id}/edit", response_class=HTMLResponse)
    async def edit_patient(request: Request, patient_id: str, me: Session = Depends(checked)) -> Response:
        need(me, "therapist", "admin")
        raw = dict((await request.form()).items())
        errors: dict[str, str] = {}
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            _patient(conn, patient_id)
            try:
                form = records.PatientEdit.model_validate(_form_data(raw))
                records.edit_patient(conn, me.staff, patient_id, form, ip(request))
            except ValidationError as exc:
                errors = field_errors(exc)
            except records.FieldError as exc:
                errors = {exc.field: exc.message}
        if errors:
            return templates.TemplateResponse(request, "patient_edit.html", {
                "me": me, "patient_id": patient_id, "errors": errors, "form": _form_data(raw)}, status_code=422)
        return RedirectResponse(f"/patients/{patient_id}", status_code=303)

    def _episode_row(conn: Conn, episode_id: str) -> tuple[Any, ...]:
        row = conn.execute(
            """select patient_id, discipline, payer_policy, array_to_string(diagnosis_codes, ', '),
                      billing_practitioner_id, consent_at::date, plan_of_care_start, plan_of_care_end,
                      setup_documented_at is not null from episodes where episode_id = %s""",
            (episode_id,)).fetchone()  # fmt: skip
        if row is None:
            raise HTTPException(404, "no such episode in this clinic")
        return tuple(row)

    def _episode_page(request: Request, me: Session, conn: Conn, episode_id: str, patient_id: str,
                      form: dict[str, Any], errors: dict[str, str], status: int = 200) -> HTMLResponse:  # fmt: skip
        return templates.TemplateResponse(request, "episode_edit.html", {
            "me": me, "episode_id": episode_id, "patient_id": patient_id, "errors": errors, "form": form,
            "policy_options": [(p, p) for p in policies],
            "therapists": _therapist_options(conn, me.staff.clinic_id)}, status_code=status)  # fmt: skip

    @app.get("/episodes/{episode_id}/edit", response_class=HTMLResponse)
    def edit_episode_form(request: Request, episode_id: str, me: Session = Depends(who)) -> HTMLResponse:
        need(me, "therapist", "admin")
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            r = _episode_row(conn, episode_id)
            keys = ("discipline", "payer_policy", "diagnosis_codes", "billing_practitioner_id", "consent_date",
                    "plan_of_care_start", "plan_of_care_end", "setup_documented")
            return _episode_page(request, me, conn, episode_id, r[0], dict(zip(keys, r[1:], strict=True)), {})

    @app.post("/episodes/{episode_id}/edit", response_class=HTMLResponse)
    async def edit_episode(request: Request, episode_id: str, me: Session = Depends(checked)) -> Response:
        need(me, "therapist", "admin")
        raw = dict((await request.form()).items())
        data = _form_data(raw)
        data["setup_documented"] = raw.get("setup_documented") == "on"
        errors: dict[str, str] = {}
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            patient_id = _episode_row(conn, episode_id)[0]
            try:
                form = records.EpisodeEdit.model_validate(data)
                records.edit_episode(conn, me.staff, episode_id, form, policies, ip(request))
            except ValidationError as exc:
                errors = field_errors(exc)
            except records.FieldError as exc:
                errors = {exc.field: exc.message}
            if errors:
                return _episode_page(request, me, conn, episode_id, patient_id, data, errors, 422)
        return RedirectResponse(f"/patients/{patient_id}", status_code=303)

    # ------------------------------------------------------------------ own account ------------
    @app.get("/account/password", response_class=HTMLResponse)
    def account_page(request: Request, me: Session = Depends(who)) -> HTMLResponse:
        return page(request, "account.html", me, error=None, done=False)

    @app.post("/account/password", response_class=HTMLResponse)
    def account_password(request: Request, current: str = Form(...), new: str = Form(...),
                         me: Session = Depends(checked)) -> HTMLResponse:  # fmt: skip
        try:
            with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
                change_password(conn, me.staff.staff_id, current, new, request.cookies.get(COOKIE, ""))
                records.audit(conn, me.staff, "password change", [None], ip(request), None, me.staff.staff_id)
        except AuthError as exc:
            return templates.TemplateResponse(request, "account.html", {"me": me, "error": str(exc), "done": False},
                                              status_code=422)  # fmt: skip
        return page(request, "account.html", me, error=None, done=True)

    # ------------------------------------------------------------------ staff (admin) ----------
    roles = ["therapist", "assistant", "biller", "admin"]

    def _staff_page(request: Request, me: Session, errors: dict[str, str] | None = None,
                    form: dict[str, Any] | None = None, notice: str | None = None, secret: str | None = None,
                    status: int = 200) -> HTMLResponse:  # fmt: skip
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            rows = staff.list_staff(conn, me.staff.clinic_id)
        return templates.TemplateResponse(request, "staff.html", {
            "me": me, "staff": rows, "roles": roles, "role_options": [(r, r) for r in roles], "errors": errors or {},
            "form": form or {"role": "therapist"}, "notice": notice, "secret": secret, "now": datetime.now(UTC)},
            status_code=status)  # fmt: skip

    @app.get("/admin/staff", response_class=HTMLResponse)
    def staff_page(request: Request, me: Session = Depends(who)) -> HTMLResponse:
        need(me, "admin")
        return _staff_page(request, me)

    @app.post("/admin/staff", response_class=HTMLResponse)
    async def staff_invite(request: Request, me: Session = Depends(checked)) -> HTMLResponse:
        need(me, "admin")
        data = _form_data(dict((await request.form()).items()))
        try:
            form = staff.Invite.model_validate(data)
            with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
                person, password = staff.invite(conn, me.staff, form, ip(request))
        except ValidationError as exc:
            return _staff_page(request, me, field_errors(exc), data, status=422)
        except staff.StaffError as exc:
            return _staff_page(request, me, {exc.field: exc.message}, data, status=422)
        return _staff_page(request, me, notice=f"Created {person.role} {person.display_name} ({person.email}).",
                           secret=password)

    def _staff_action(request: Request, me: Session, staff_id: str, action: str, form: dict[str, Any]) -> HTMLResponse:
        need(me, "admin")
        secret = None
        try:
            with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
                if action == "role":
                    staff.change_role(conn, me.staff, staff_id, staff.RoleChange.model_validate(form), ip(request))
                    notice = f"{staff_id}: role changed; their sessions have ended."
                elif action == "deactivate":
                    n = staff.deactivate(conn, me.staff, staff_id, ip(request))
                    notice = f"{staff_id} deactivated; {n} sessions ended."
                elif action == "reactivate":
                    staff.reactivate(conn, me.staff, staff_id, ip(request))
                    notice = f"{staff_id} reactivated."
                else:
                    secret = staff.reset_password(conn, me.staff, staff_id, ip(request))
                    notice = f"{staff_id}: password reset; their sessions have ended."
        except LookupError:
            raise HTTPException(404, "no such staff member in this clinic") from None
        except ValidationError as exc:
            return _staff_page(request, me, field_errors(exc), status=422)
        except staff.StaffError as exc:
            return _staff_page(request, me, {exc.field: exc.message}, status=409)
        return _staff_page(request, me, notice=notice, secret=secret)

    @app.post("/admin/staff/{staff_id}/{action}", response_class=HTMLResponse)
    async def staff_action(request: Request, staff_id: str, action: str, me: Session = Depends(checked)) -> HTMLResponse:
        if action not in ("role", "deactivate", "reactivate", "password"):
            raise HTTPException(404, "no such action")
        return _staff_action(request, me, staff_id, action, _form_data(dict((await request.form()).items())))

    # ------------------------------------------------------------------ audit (admin) ----------
    def _audit_rows(conn: Conn, limit: int) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in conn.execute(
            """select audit_id, at, staff_id, patient_id, action, detail, ip from app_audit_log
                order by audit_id desc limit %s""", (limit,))]  # fmt: skip

    @app.get("/admin/audit", response_class=HTMLResponse)
    def audit_page(request: Request, me: Session = Depends(who)) -> HTMLResponse:
        need(me, "admin")
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            rows = _audit_rows(conn, 500)
        return page(request, "audit.html", me, rows=rows)

    @app.get("/admin/audit.csv")
    def audit_csv(me: Session = Depends(who)) -> Response:
        need(me, "admin")
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            rows = _audit_rows(conn, 1_000_000)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(["audit_id", "at", "staff_id", "patient_id", "action", "detail", "ip"])
        w.writerows(rows)
        return Response(buf.getvalue(), media_type="text/csv; charset=utf-8; header=present",
                        headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'})

    # ------------------------------------------------------------------ alerts (admin) ---------
    @app.get("/admin/alerts", response_class=HTMLResponse)
    def alerts_page(request: Request, me: Session = Depends(who)) -> HTMLResponse:
        need(me, "admin")
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            current = alerts.load_settings(conn, me.staff.clinic_id)
            sent = alerts.recent_deliveries(conn)
        return page(request, "alerts.html", me, current=current, sent=sent, error=None)

    @app.post("/admin/alerts", response_class=HTMLResponse)
    def save_alerts(request: Request, webhook_url: str = Form(""), email_to: str = Form(""),
                    rotate: str | None = Form(None), me: Session = Depends(checked)) -> Response:  # fmt: skip
        need(me, "admin")
        emails = [e.strip().lower() for e in email_to.replace(";", ",").replace("\n", ",").split(",") if e.strip()]
        with db.clinic(me.staff.clinic_id, me.staff.staff_id) as conn:
            try:
                alerts.save_settings(conn, me.staff.clinic_id, webhook_url, emails, me.staff.staff_id,
                                     rotate_secret=rotate is not None)
            except ValueError as exc:
                return templates.TemplateResponse(request, "alerts.html", {
                    "me": me, "current": alerts.load_settings(conn, me.staff.clinic_id),
                    "sent": alerts.recent_deliveries(conn), "error": str(exc),
                    "form": {"webhook_url": webhook_url, "email_to": email_to}}, status_code=422)  # fmt: skip
        return RedirectResponse("/admin/alerts", status_code=303)

    # ------------------------------------------------------------------ JSON API ---------------
    def api_session(request: Request) -> Session:
        """A bearer token (scripts), or the session cookie (the pages' htmx) with, for writes, the
        session's CSRF token in a header: a bearer token is never sent by a browser on its own."""
        bearer = bearer_token(request)
        token = bearer or request.cookies.get(COOKIE)
        if not token:
            raise HTTPException(401, "sign in: POST /api/v1/session, then send Authorization: Bearer <token>",
                                headers={"WWW-Authenticate": "Bearer"})
        with db.anonymous() as conn:
            me = session(conn, token, a)
        if me is None:
            raise HTTPException(401, "the session has ended or expired: sign in again",
                                headers={"WWW-Authenticate": "Bearer"})
        if (bearer is None and request.method not in ("GET", "HEAD")
                and not csrf_ok(me, request.headers.get("X-CSRF-Token"))):
            raise HTTPException(403, "CSRF check failed: send the X-CSRF-Token header")
        return me

    def api_caller(me: Session = Depends(api_session)) -> elig_api.Caller:
        return elig_api.Caller(clinic_id=me.staff.clinic_id, actor=me.staff.staff_id)

    def api_conn(me: Session = Depends(api_session)) -> Iterator[Conn]:
        yield from clinic_conn(me)

    app.include_router(clinic_router(db, a, s, pepper, policies, api_session))

    app.include_router(elig_api.eligibility_router(api_conn, api_conn, api_caller, prefix="/api/v1"))

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    return app
