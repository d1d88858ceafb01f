"""Staff management, editing patients and episodes, the onboarding JSON API, `rtm clinic` and
OpenID Connect sign-in (against a local fake provider), on the real database and over HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from dashboards.auth import npi_with_check_digit
from dashboards.settings import AppSettings
from dashboards.web import create_app
from tests.dashboards.conftest import PASSWORD, Clinics, _free_port, serve
from tests.dashboards.fake_oidc import FakeIdP

pytestmark = pytest.mark.integration


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m
    return m.group(1)


def _signed_in(app_url: str, email: str, password: str = PASSWORD) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=app_url, follow_redirects=True)
    r = c.post("/login", data={"email": email, "password": password})
    assert r.status_code == 200, r.text[:300]
    return c, _csrf(r.text)


def _owner(clinics: Clinics) -> psycopg.Connection[Any]:
    return psycopg.connect(clinics.settings.dsn("owner"), autocommit=True)


# ------------------------------------------------------------------------------ staff ----------


def test_admin_manages_staff_and_a_deactivated_persons_session_ends(clinics: Clinics, app_url: str) -> None:
    therapist, _ = _signed_in(app_url, clinics.a.email("therapist"))
    assert therapist.get("/admin/staff").status_code == 403  # admins only
    admin, token = _signed_in(app_url, clinics.a.email("admin"))
    page = admin.get("/admin/staff")
    assert page.status_code == 200 and clinics.a.email("biller") in page.text
    assert clinics.b.email("biller") not in page.text  # another clinic's staff are not listed

    bad_npi = npi_with_check_digit("123456789")[:9] + str((int(npi_with_check_digit("123456789")[9]) + 1) % 10)
    r = admin.post(
        "/admin/staff",
        data={
            "csrf": token,
            "email": "new.pt@clinic-a.example",
            "display_name": "New PT",
            "role": "therapist",
            "discipline": "PT",
            "npi": bad_npi,
        },
    )
    assert r.status_code == 422 and 'id="npi-error"' in r.text and "check digit" in r.text
    r = admin.post(
        "/admin/staff",
        data={
            "csrf": token,
            "email": "new.pt@clinic-a.example",
            "display_name": "New PT",
            "role": "therapist",
            "discipline": "PT",
        },
    )
    assert r.status_code == 422 and "needs a discipline (PT, OT, SLP) and an NPI" in r.text
    with _owner(clinics) as conn:
        assert conn.execute("select count(*) from app_staff where email = 'new.pt@clinic-a.example'").fetchone() == (0,)
    r = admin.post(
        "/admin/staff",
        data={
            "csrf": token,
            "email": "new.pt@clinic-a.example",
            "display_name": "New PT",
            "role": "therapist",
            "discipline": "PT",
            "npi": npi_with_check_digit("123456789"),
        },
    )
    assert r.status_code == 200
    temp = re.search(r'id="temporary-password">([^<]+)<', r.text)
    assert temp
    with _owner(clinics) as conn:
        sid, role = conn.execute(
            "select staff_id, role from app_staff where email = 'new.pt@clinic-a.example'"
        ).fetchone()
        assert conn.execute("select role from practitioners where practitioner_id = %s", (sid,)).fetchone() == (role,)
    newbie, newbie_csrf = _signed_in(app_url, "new.pt@clinic-a.example", temp.group(1))
    assert newbie.get("/queue").status_code == 200
    # They replace the temporary password with their own (the current one is checked).
    own = "my own long passphrase"
    r = newbie.post("/account/password", data={"csrf": newbie_csrf, "current": "wrong", "new": own})
    assert r.status_code == 422 and "current password is wrong" in r.text
    r = newbie.post("/account/password", data={"csrf": newbie_csrf, "current": temp.group(1), "new": own})
    assert r.status_code == 200 and "password is changed" in r.text
    newbie, _ = _signed_in(app_url, "new.pt@clinic-a.example", own)

    # Role change: to an assistant (the practitioner follows); their session ends.
    r = admin.post(f"/admin/staff/{sid}/role", data={"csrf": token, "role": "assistant", "discipline": "PT"})
    assert r.status_code == 200
    assert newbie.get("/queue", follow_redirects=False).status_code == 303
    with _owner(clinics) as conn:
        assert conn.execute("select role from practitioners where practitioner_id = %s", (sid,)).fetchone() == (
            "assistant",
        )

    # Password reset: the old one stops working, the new one works.
    r = admin.post(f"/admin/staff/{sid}/password", data={"csrf": token})
    new_temp = re.search(r'id="temporary-password">([^<]+)<', r.text)
    assert new_temp and new_temp.group(1) != temp.group(1)
    assert (
        httpx.post(app_url + "/login", data={"email": "new.pt@clinic-a.example", "password": own}).status_code
        == 401
    )
    newbie, _ = _signed_in(app_url, "new.pt@clinic-a.example", new_temp.group(1))

    # Deactivation ends the live session at once and refuses new sign-ins.
    assert admin.post(f"/admin/staff/{sid}/deactivate", data={"csrf": token}).status_code == 200
    assert newbie.get("/queue", follow_redirects=False).headers["location"] == "/login"
    r = httpx.post(app_url + "/login", data={"email": "new.pt@clinic-a.example", "password": new_temp.group(1)})
    assert r.status_code == 401 and "disabled" in r.text
    with _owner(clinics) as conn:
        live = conn.execute(
            "select count(*) from app_sessions where staff_id = %s and ended_at is null", (sid,)
        ).fetchone()
        actions = [
            r[0]
            for r in conn.execute(
                "select action from app_audit_log where staff_id = 'clinic-a-admin' and detail like %s"
                " order by audit_id",
                (f"{sid}%",),
            )
        ]
    assert live == (0,)
    assert actions == ["staff invite", "staff role", "staff reset password", "staff deactivate"]
    with _owner(clinics) as conn:
        assert conn.execute("select count(*) from app_audit_log where staff_id = %s and action = 'password change'",
                            (sid,)).fetchone() == (1,)

    # An admin cannot reach another clinic's staff, nor deactivate themself.
    assert (
        admin.post(f"/admin/staff/{clinics.b.staff_id('therapist')}/deactivate", data={"csrf": token}).status_code
        == 404
    )
    assert admin.post(f"/admin/staff/{clinics.a.staff_id('admin')}/deactivate", data={"csrf": token}).status_code == 409
    assert admin.post(f"/admin/staff/{sid}/reactivate", data={"csrf": "forged"}).status_code == 403


# ------------------------------------------------------------------------------ edits ----------


def test_edit_patient_and_episode_with_field_messages_nothing_half_saved(clinics: Clinics, app_url: str) -> None:
    c, token = _signed_in(app_url, clinics.a.email("therapist"))
    pid = clinics.a_patients[2]
    with _owner(clinics) as conn:
        ref, eid = conn.execute(
            """select p.external_ref, e.episode_id from patients p join episodes e using (patient_id)
                                    where p.patient_id = %s""",
            (pid,),
        ).fetchone()
        other_ref = conn.execute(
            "select external_ref from patients where patient_id = %s", (clinics.a_patients[3],)
        ).fetchone()[0]
    assert c.get(f"/patients/{pid}/edit").status_code == 200
    # A new MRN with a bad time zone: the time zone is named, and the MRN is not saved either.
    r = c.post(f"/patients/{pid}/edit", data={"csrf": token, "external_ref": "MRN-EDITED", "tz": "Mars/Olympus"})
    assert r.status_code == 422 and 'id="tz-error"' in r.text and "not an IANA time zone" in r.text
    r = c.post(f"/patients/{pid}/edit", data={"csrf": token, "external_ref": other_ref, "tz": "Europe/Berlin"})
    assert r.status_code == 422 and 'id="external_ref-error"' in r.text
    with _owner(clinics) as conn:
        assert conn.execute("select external_ref from patients where patient_id = %s", (pid,)).fetchone() == (ref,)
    r = c.post(f"/patients/{pid}/edit", data={"csrf": token, "external_ref": "MRN-EDITED", "tz": "Europe/Berlin"})
    assert r.status_code == 200 and "Patient MRN-EDITED" in r.text

    base = {
        "csrf": token,
        "discipline": "PT",
        "payer_policy": "medicare-2026",
        "diagnosis_codes": "M17.11, Z96.651",
        "billing_practitioner_id": clinics.a.staff_id("therapist"),
        "consent_date": "2026-01-02",
        "plan_of_care_start": "2026-01-01",
        "plan_of_care_end": "2026-03-31",
        "setup_documented": "on",
    }
    r = c.post(f"/episodes/{eid}/edit", data={**base, "diagnosis_codes": "M17.11, nope", "discipline": "OT"})
    assert r.status_code == 422 and 'id="diagnosis_codes-error"' in r.text and "NOPE" in r.text
    r = c.post(f"/episodes/{eid}/edit", data={**base, "plan_of_care_end": "2025-12-01"})
    assert r.status_code == 422 and "the plan of care ends before it starts" in r.text
    r = c.post(f"/episodes/{eid}/edit", data={**base, "billing_practitioner_id": clinics.a.staff_id("assistant")})
    assert r.status_code == 422 and 'id="billing_practitioner_id-error"' in r.text
    with _owner(clinics) as conn:
        assert conn.execute("select discipline from episodes where episode_id = %s", (eid,)).fetchone() == ("PT",)
    r = c.post(f"/episodes/{eid}/edit", data={**base, "discipline": "OT", "diagnosis_codes": "S83.241A"})
    assert r.status_code == 200
    with _owner(clinics) as conn:
        ep = conn.execute(
            """select discipline, diagnosis_codes, plan_of_care_end, consent_at::date,
                                    setup_documented_at is not null from episodes where episode_id = %s""",
            (eid,),
        ).fetchone()
        tz = conn.execute(
            "select tz from patient_timezones where patient_id = %s order by effective_from desc limit 1", (pid,)
        ).fetchone()
        audit = conn.execute(
            "select action, detail from app_audit_log where patient_id = %s and action like 'edit %%'"
            " order by audit_id",
            (pid,),
        ).fetchall()
    assert ep == ("OT", ["S83.241A"], date(2026, 3, 31), date(2026, 1, 2), True) and tz == ("Europe/Berlin",)
    assert [a[0] for a in audit] == ["edit patient", "edit episode"]
    assert f"external_ref: '{ref}' -> 'MRN-EDITED'" in audit[0][1] and "discipline: 'PT' -> 'OT'" in audit[1][1]
    # Another clinic's episode and patient are invisible.
    with _owner(clinics) as conn:
        b_ep = conn.execute("select episode_id from episodes where clinic_id = 'clinic-b' limit 1").fetchone()[0]
    assert c.post(f"/episodes/{b_ep}/edit", data=base).status_code == 404
    assert c.get(f"/patients/{clinics.b_patients[0]}/edit").status_code == 404


# ------------------------------------------------------------------------------ JSON API -------


def _bearer(app_url: str, email: str) -> httpx.Client:
    r = httpx.post(app_url + "/api/v1/session", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text
    return httpx.Client(base_url=app_url + "/api/v1", headers={"Authorization": f"Bearer {r.json()['token']}"})


def test_onboarding_json_api(clinics: Clinics, app_url: str) -> None:
    spec = httpx.get(app_url + "/openapi.json").json()
    assert {"/api/v1/session", "/api/v1/clinic/patients", "/api/v1/clinic/episodes/{episode_id}/devices"} <= set(
        spec["paths"]
    )
    assert httpx.get(app_url + "/api/v1/clinic/patients").status_code == 401
    api = _bearer(app_url, clinics.a.email("therapist"))
    therapist = clinics.a.staff_id("therapist")
    body = {
        "external_ref": "API-1",
        "tz": "America/Chicago",
        "discipline": "PT",
        "payer_policy": "medicare-2026",
        "diagnosis_codes": ["M17.11"],
        "billing_practitioner_id": therapist,
        "start_date": date.today().isoformat(),
        "setup_documented": True,
    }
    r = api.post("/clinic/patients", json={**body, "tz": "Nowhere", "diagnosis_codes": ["xx"]})
    assert r.status_code == 422
    assert {tuple(e["loc"]) for e in r.json()["detail"]} == {("body", "tz"), ("body", "diagnosis_codes")}
    r = api.post("/clinic/patients", json={**body, "payer_policy": "no-such-policy"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "payer_policy"]
    r = api.post("/clinic/patients", json=body)
    assert r.status_code == 201
    pid, eid = r.json()["patient_id"], r.json()["episode_id"]
    assert api.post("/clinic/patients", json=body).json()["detail"][0]["loc"] == ["body", "external_ref"]

    r = api.post(
        f"/clinic/episodes/{eid}/prescriptions",
        json={
            "exercise": "knee_extension",
            "sets": 3,
            "reps": 12,
            "sessions_per_week": 5,
            "target_rom_deg": 100,
            "effective_from": date.today().isoformat(),
        },
    )
    assert r.status_code == 201
    with _owner(clinics) as conn:
        model = conn.execute("select model_id from device_models order by model_id limit 1").fetchone()[0]
    r = api.post(f"/clinic/episodes/{eid}/devices", json={"device_id": "SN-API-0001", "model_id": model})
    assert r.status_code == 201 and re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}", r.json()["code"])
    r = api.post(
        f"/clinic/patients/{pid}/episodes", json={k: v for k, v in body.items() if k not in ("external_ref", "tz")}
    )
    assert r.status_code == 422 and "open episode" in r.json()["detail"][0]["msg"]
    r = api.patch(
        f"/clinic/episodes/{eid}",
        json={
            "discipline": "PT",
            "payer_policy": "medicare-2026",
            "diagnosis_codes": ["M17.12"],
            "billing_practitioner_id": therapist,
            "setup_documented": True,
        },
    )
    assert r.status_code == 200 and r.json()["changes"] == ["diagnosis_codes: ['M17.11'] -> ['M17.12']"]
    assert (
        api.patch(f"/clinic/patients/{pid}", json={"external_ref": "API-1b", "tz": "America/Denver"}).status_code == 200
    )
    assert (
        api.post(
            f"/clinic/episodes/{eid}/discharge", json={"on": (date.today() - timedelta(days=400)).isoformat()}
        ).status_code
        == 409
    )
    assert api.post(f"/clinic/episodes/{eid}/discharge", json={"on": date.today().isoformat()}).status_code == 200
    r = api.post(
        f"/clinic/patients/{pid}/episodes",
        json={**{k: v for k, v in body.items() if k not in ("external_ref", "tz")}, "discipline": "OT"},
    )
    assert r.status_code == 201
    got = api.get(f"/clinic/patients/{pid}").json()
    assert got["external_ref"] == "API-1b" and got["tz"] == "America/Denver"
    assert [(e["discipline"], e["discharge_date"] is not None) for e in got["episodes"]] == [
        ("PT", True),
        ("OT", False),
    ]
    with _owner(clinics) as conn:
        rx = conn.execute(
            "select sets, reps, target_rom_deg from exercise_prescriptions where episode_id = %s", (eid,)
        ).fetchone()
        dev = conn.execute(
            "select patient_id from ingest_device_credentials where device_id = 'SN-API-0001'"
        ).fetchone()
        acts = {r[0] for r in conn.execute("select action from app_audit_log where patient_id = %s", (pid,))}
    assert rx == (3, 12, 100) and dev == (pid,)
    assert {
        "api create patient",
        "api prescribe",
        "api enrol device",
        "edit episode",
        "edit patient",
        "api discharge",
        "api create episode",
        "api view patient",
    } <= acts

    # Another clinic's script sees none of it; an assistant may read but not onboard.
    other = _bearer(app_url, clinics.b.email("therapist"))
    assert other.get(f"/clinic/patients/{pid}").status_code == 404
    assert pid not in {p["patient_id"] for p in other.get("/clinic/patients").json()}
    assert (
        other.post(
            f"/clinic/episodes/{eid}/prescriptions",
            json={"exercise": "x", "sets": 1, "reps": 1, "sessions_per_week": 1, "effective_from": "2026-01-01"},
        ).status_code
        == 404
    )
    assistant = _bearer(app_url, clinics.a.email("assistant"))
    assert assistant.get(f"/clinic/patients/{pid}").status_code == 200
    assert assistant.post("/clinic/patients", json={**body, "external_ref": "API-2"}).status_code == 403
    # A cookie alone cannot write (CSRF); the bearer's session ends at sign-out.
    c, _ = _signed_in(app_url, clinics.a.email("therapist"))
    assert c.post("/api/v1/clinic/patients", json={**body, "external_ref": "API-3"}).status_code == 403
    assert api.delete("/session").status_code == 204
    assert api.get("/clinic/patients").status_code == 401


# ------------------------------------------------------------------------------ CLI ------------


def _rtm(clinics: Clinics, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RTM_PG_DATABASE": clinics.settings.pg_database}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "clinic", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_rtm_clinic_cli_onboards_through_row_level_security(clinics: Clinics) -> None:
    therapist = clinics.a.staff_id("therapist")
    bad = _rtm(
        clinics,
        "add-patient",
        "--clinic",
        "clinic-a",
        "--mrn",
        "CLI-1",
        "--tz",
        "Mars/Base",
        "--discipline",
        "PT",
        "--icd10",
        "M17.11",
        "--billing-therapist",
        therapist,
        "--start",
        "2026-01-05",
    )
    assert bad.returncode != 0 and "not an IANA time zone" in bad.stderr
    # The billing therapist of another clinic is invisible to this clinic: refused.
    cross = _rtm(
        clinics,
        "add-patient",
        "--clinic",
        "clinic-b",
        "--mrn",
        "CLI-X",
        "--tz",
        "UTC",
        "--discipline",
        "PT",
        "--icd10",
        "M17.11",
        "--billing-therapist",
        therapist,
        "--start",
        "2026-01-05",
    )
    assert cross.returncode == 1 and "billing practitioner" in cross.stderr
    done = _rtm(
        clinics,
        "add-patient",
        "--clinic",
        "clinic-a",
        "--mrn",
        "CLI-1",
        "--tz",
        "America/New_York",
        "--discipline",
        "PT",
        "--icd10",
        "M17.11,Z96.651",
        "--billing-therapist",
        therapist,
        "--start",
        "2026-01-05",
        "--consent",
        "2026-01-05",
        "--setup-documented",
        "--json",
        "--actor",
        "it-script",
    )
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    eid = made["episode_id"]
    rx = _rtm(
        clinics,
        "prescribe",
        "--clinic",
        "clinic-a",
        "--episode",
        eid,
        "--exercise",
        "shoulder_flexion",
        "--sets",
        "2",
        "--reps",
        "15",
        "--days-per-week",
        "6",
        "--target-rom",
        "150",
        "--json",
    )
    assert rx.returncode == 0, rx.stderr
    # clinic-b cannot see clinic-a's episode.
    assert _rtm(clinics, "discharge", "--clinic", "clinic-b", "--episode", eid, "--on", "2026-02-01").returncode == 1
    with _owner(clinics) as conn:
        model = conn.execute("select model_id from device_models order by model_id limit 1").fetchone()[0]
    pair = _rtm(
        clinics,
        "enrol-device",
        "--clinic",
        "clinic-a",
        "--episode",
        eid,
        "--device",
        "SN-CLI-0001",
        "--model",
        model,
        "--json",
    )
    assert pair.returncode == 0, pair.stderr
    assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}", json.loads(pair.stdout)["code"])
    out = _rtm(clinics, "discharge", "--clinic", "clinic-a", "--episode", eid, "--on", "2026-02-01")
    assert out.returncode == 0, out.stderr
    listed = json.loads(_rtm(clinics, "patients", "--clinic", "clinic-a", "--json").stdout)
    mine = [p for p in listed if p["patient_id"] == made["patient_id"]]
    assert mine and mine[0]["tz"] == "America/New_York" and mine[0]["episodes"][0]["discharge_date"] == "2026-02-01"
    assert not {p["patient_id"] for p in listed} & set(clinics.b_patients)
    with _owner(clinics) as conn:
        rows = conn.execute(
            "select staff_id, action from app_audit_log where patient_id = %s order by audit_id", (made["patient_id"],)
        ).fetchall()
        rxrow = conn.execute(
            "select sets, reps, sessions_per_week from exercise_prescriptions where episode_id = %s", (eid,)
        ).fetchone()
    assert rows[0] == ("it-script", "cli create patient") and ("cli:" in rows[1][0])
    assert {r[1] for r in rows} >= {"cli prescribe", "cli enrol device", "cli discharge"}
    assert rxrow == (2, 15, 6)


# ------------------------------------------------------------------------------ OIDC -----------


@pytest.fixture(scope="module")
def idp_and_app(clinics: Clinics) -> Iterator[tuple[FakeIdP, str]]:
    idp_port, app_port = _free_port(), _free_port()
    idp = FakeIdP(issuer=f"http://127.0.0.1:{idp_port}", client_id="rtm-clinic-a", client_secret="s3cret-of-the-test")
    settings = AppSettings(
        port=app_port,
        oidc_discovery_url=f"{idp.issuer}/.well-known/openid-configuration",
        oidc_client_id=idp.client_id,
        oidc_client_secret=idp.client_secret,  # type: ignore[arg-type]
        oidc_clinic="clinic-a",
        oidc_label="Clinic A ID",
    )
    with serve(idp.app(), idp_port), serve(create_app(clinics.settings, settings), app_port) as url:
        yield idp, url


def _oidc_sign_in(url: str, client: httpx.Client | None = None) -> tuple[httpx.Client, httpx.Response]:
    c = client or httpx.Client(base_url=url)
    start = c.get("/login/oidc")
    assert start.status_code == 303
    at_idp = c.get(start.headers["location"])  # the provider signs the person in and sends them back
    assert at_idp.status_code == 302
    return c, c.get(at_idp.headers["location"])


def test_oidc_sign_in_maps_to_an_existing_account_and_binds_it(
    clinics: Clinics, idp_and_app: tuple[FakeIdP, str]
) -> None:
    idp, url = idp_and_app
    assert "Sign in with Clinic A ID" in httpx.get(url + "/login").text
    idp.mode, idp.subject, idp.email = "good", "sub-therapist-a", clinics.a.email("therapist").upper()
    c, done = _oidc_sign_in(url)
    assert done.status_code == 200 and "rtm_session" in done.cookies
    assert c.get("/queue").status_code == 200
    with _owner(clinics) as conn:
        bound = conn.execute(
            "select oidc_subject from app_staff where staff_id = %s", (clinics.a.staff_id("therapist"),)
        ).fetchone()
    assert bound == ("sub-therapist-a",)
    # Later sign-ins match the subject, whatever e-mail the provider now sends.
    idp.email = None
    c2, again = _oidc_sign_in(url)
    assert (again.status_code == 200 and "Therapist" in c2.get("/queue").text) or c2.get("/queue").status_code == 200


def test_oidc_refuses_unknown_people_forged_tokens_wrong_nonce_and_replays(
    clinics: Clinics, idp_and_app: tuple[FakeIdP, str]
) -> None:
    idp, url = idp_and_app
    with _owner(clinics) as conn:
        staff_before = conn.execute("select count(*) from app_staff").fetchone()
    cases = [
        ("good", "sub-stranger", "stranger@elsewhere.example", True, "no staff account of this clinic"),
        ("good", "sub-b", clinics.b.email("therapist"), True, "no staff account of this clinic"),  # another clinic's
        ("good", "sub-unverified", clinics.a.email("biller"), False, "no staff account of this clinic"),
        ("forged", "sub-therapist-a", None, True, "ID token was refused (bad_signature"),
        ("wrong_nonce", "sub-therapist-a", None, True, "Invalid claim: &#39;nonce&#39;"),
        ("wrong_audience", "sub-therapist-a", None, True, "Invalid claim: &#39;aud&#39;"),
    ]
    for mode, sub, email, verified, message in cases:
        idp.mode, idp.subject, idp.email, idp.email_verified = mode, sub, email, verified  # type: ignore[assignment]
        c, done = _oidc_sign_in(url)
        assert done.status_code == 401 and message in done.text, (mode, sub, done.text[:400])
        assert "rtm_session" not in c.cookies
        assert c.get("/queue", follow_redirects=False).status_code == 303
    with _owner(clinics) as conn:
        assert conn.execute("select count(*) from app_staff").fetchone() == staff_before  # nobody auto-created
        assert conn.execute(
            "select count(*) from app_staff where oidc_subject in ('sub-b', 'sub-unverified')"
        ).fetchone() == (0,)

    # The state must come back to the browser that started the sign-in, and only once.
    idp.mode, idp.subject, idp.email, idp.email_verified = "good", "sub-therapist-a", clinics.a.email("therapist"), True
    c = httpx.Client(base_url=url)
    start = c.get("/login/oidc")
    back = c.get(start.headers["location"]).headers["location"]
    stranger = httpx.Client()
    r = stranger.get(back)
    assert r.status_code == 401 and "did not start in this browser" in r.text
    assert c.get(back).status_code == 200
    replay = httpx.Client(base_url=url, cookies={"rtm_oidc_state": re.search(r"state=([^&]+)", back).group(1)})
    r = replay.get(back)
    assert r.status_code == 401 and "already used" in r.text
    # The provider refused the code exchange for a replayed code too: it was single use at the provider.
    assert idp.token_requests >= len(cases) + 1


def test_oidc_auto_creates_only_when_the_admin_configured_it(clinics: Clinics) -> None:
    """With RTM_APP_OIDC_AUTO_CREATE_ROLE=biller an unknown verified identity becomes a biller of the
    configured clinic, bound to its subject; the next sign-in finds the same account."""
    from dashboards.auth import AuthError
    from dashboards.oidc import map_identity

    claims = {"sub": "sub-auto-1", "email": "auto.biller@idp.example", "email_verified": True, "name": "Auto Biller"}
    off = AppSettings(oidc_clinic="clinic-a")
    on = AppSettings(oidc_clinic="clinic-a", oidc_auto_create_role="biller")
    with psycopg.connect(clinics.settings.dsn("app"), autocommit=True) as conn:
        with pytest.raises(AuthError, match="no staff account"):
            map_identity(conn, off, "https://idp.example", claims)
        made = map_identity(conn, on, "https://idp.example", claims)
        again = map_identity(conn, on, "https://idp.example", {**claims, "email": "changed@idp.example"})
        with pytest.raises(AuthError, match="no staff account"):  # unverified e-mail: never created
            map_identity(conn, on, "https://idp.example", {**claims, "sub": "sub-auto-2", "email_verified": False})
    assert (made.role, made.clinic_id, made.email) == ("biller", "clinic-a", "auto.biller@idp.example")
    assert again.staff_id == made.staff_id
    with _owner(clinics) as conn:
        row = conn.execute("select oidc_issuer, oidc_subject from app_staff where staff_id = %s",
                           (made.staff_id,)).fetchone()
    assert row == ("https://idp.example", "sub-auto-1")
