"""Row-level security, the audit log, sign-in, lock-out and CSRF, against the real database and app."""

from __future__ import annotations

import re

import httpx
import psycopg
import pytest

from tests.dashboards.conftest import PASSWORD, Clinics

pytestmark = pytest.mark.integration


def _patient_tables(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        """select distinct c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
            join pg_attribute a on a.attrelid = c.oid
            where n.nspname = 'public' and c.relkind = 'r' and a.attname in ('patient_id', 'episode_id')"""
    ).fetchall()
    return sorted(r[0] for r in rows)


def test_every_patient_table_the_app_can_touch_has_row_level_security(clinics: Clinics) -> None:
    """Row-level security on every table with patient data the app role has any right on; on the rest
    (the pipeline's internals, hypertables read through clinic views) it has no right at all."""
    app = clinics.settings.pg_app_user
    with psycopg.connect(clinics.settings.dsn("owner")) as conn:
        tables = _patient_tables(conn)
        open_to_app = [t for t in tables if conn.execute(
            """select bool_or(has_table_privilege(%s, ('public.' || %s)::regclass, p))
                 from unnest(array['select', 'insert', 'update', 'delete']) p""", (app, t)).fetchone()[0]]
        off = [t for t in open_to_app if not conn.execute(
            "select relrowsecurity from pg_class where relname = %s and relnamespace = 'public'::regnamespace",
            (t,)).fetchone()[0]]  # fmt: skip
    assert len(tables) > 15 and len(open_to_app) >= 10
    assert {"patients", "episodes", "therapist_flags", "therapist_time_entries"} <= set(open_to_app)
    assert off == []


def test_app_role_reads_nothing_of_another_clinic(clinics: Clinics) -> None:
    """As the app role with clinic A set, SQL straight at every table (and every hypertable chunk)
    returns none of clinic B's rows, while A's own rows are there."""
    with psycopg.connect(clinics.settings.dsn("owner")) as owner:
        tables = _patient_tables(owner)
        chunks = [r[0] for r in owner.execute(
            "select format('%I.%I', chunk_schema, chunk_name) from timescaledb_information.chunks")]
        b_rows = owner.execute("select count(*) from data_day_facts where patient_id = any(%s)",
                               (clinics.b_patients,)).fetchone()[0]
    assert b_rows > 0 and chunks
    with psycopg.connect(clinics.settings.dsn("app")) as conn:
        conn.execute("select set_config('rtm.clinic', 'clinic-a', true)")
        seen_own = conn.execute("select count(*) from patients").fetchone()[0]
        assert seen_own == len(clinics.a_patients)
        readable = 0
        for table in tables:
            column = "patient_id" if table != "exercise_prescriptions" else "episode_id"
            ids = clinics.b_patients if column == "patient_id" else [f"{p}-ep" for p in clinics.b_patients]
            try:
                with conn.transaction():
                    n = conn.execute(f"select count(*) from {table} where {column} = any(%s)", (ids,)).fetchone()[0]
                assert n == 0, table
                readable += 1
            except psycopg.errors.InsufficientPrivilege:
                pass  # not even granted: nothing to read
        assert readable >= 10
        for view in ("app_data_day_facts", "app_exercise_sets"):
            assert conn.execute(f"select count(*) from {view} where patient_id = any(%s)",
                                (clinics.b_patients,)).fetchone()[0] == 0
            assert conn.execute(f"select count(*) from {view}").fetchone()[0] > 0
        for chunk in chunks:
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(f"select count(*) from {chunk}")
    with psycopg.connect(clinics.settings.dsn("app")) as conn:  # no clinic set: nothing at all
        assert conn.execute("select count(*) from patients").fetchone()[0] == 0


def test_audit_log_is_append_only(clinics: Clinics) -> None:
    with psycopg.connect(clinics.settings.dsn("owner"), autocommit=True) as conn:
        conn.execute("""insert into app_audit_log (clinic_id, staff_id, action) values ('clinic-a', 'x', 'test')""")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("delete from app_audit_log")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("update app_audit_log set action = 'changed'")


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m
    return m.group(1)


def test_sign_in_lockout_csrf_and_audit(clinics: Clinics, app_url: str) -> None:
    with httpx.Client(base_url=app_url) as c:
        r = c.get("/queue")
        assert r.status_code == 303 and r.headers["location"] == "/login"
        email = clinics.b.email("assistant")
        for _ in range(4):
            assert c.post("/login", data={"email": email, "password": "wrong password!"}).status_code == 401
        r = c.post("/login", data={"email": email, "password": "wrong password!"})
        assert "locked" in r.text
        r = c.post("/login", data={"email": email, "password": PASSWORD})  # right, but locked
        assert r.status_code == 401 and "locked" in r.text

    with httpx.Client(base_url=app_url, follow_redirects=True) as c:
        r = c.post("/login", data={"email": clinics.a.email("therapist"), "password": PASSWORD})
        assert r.status_code == 200 and "Review queue" in r.text
        token = _csrf(r.text)
        flag = re.search(r'/flags/(\d+)/ack', r.text)
        assert flag, "the seeded clinic has open flags"
        assert c.post(f"/flags/{flag.group(1)}/ack", data={"csrf": "forged"}).status_code == 403
        pid = clinics.a_patients[0]
        assert c.get(f"/patients/{pid}").status_code == 200
        assert c.get(f"/patients/{clinics.b_patients[0]}").status_code == 404  # another clinic's: invisible
        assert c.post(f"/flags/{flag.group(1)}/ack", data={"csrf": token}).status_code == 200
    with psycopg.connect(clinics.settings.dsn("owner")) as conn:
        rows = conn.execute("select staff_id, action, ip from app_audit_log where patient_id = %s", (pid,)).fetchall()
        state = conn.execute("select state, acknowledged_by from therapist_flags where flag_id = %s",
                             (int(flag.group(1)),)).fetchone()
    assert ("clinic-a-therapist", "view patient", "127.0.0.1") in rows
    assert state == ("acknowledged", "clinic-a-therapist")


def test_claims_csv_and_fhir_bundle(clinics: Clinics) -> None:
    import csv
    import io
    import json
    from datetime import date

    from dashboards import claims

    month = date.today().replace(day=1)
    with psycopg.connect(clinics.settings.dsn("owner"), autocommit=True) as owner:  # a name that needs quoting
        owner.execute("update patients set external_ref = 'MRN, \"A\"' where patient_id = %s", (clinics.a_patients[1],))
    with psycopg.connect(clinics.settings.dsn("app")) as conn:
        conn.execute("select set_config('rtm.clinic', 'clinic-a', true)")
        lines = claims.claim_lines(conn, "clinic-a", month)
        text = claims.to_csv(lines)
        bundle = json.loads(claims.fhir_bundle(conn, "clinic-a", month))
    assert lines and {ln.patient_id for ln in lines} <= set(clinics.a_patients)
    assert text.count("\r\n") == len(lines) + 1 and '"MRN, ""A"""' in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["cpt"] for r in rows} >= {"98977"}
    assert all(r["icd10_pointers"] == "AB" and len(r["billing_npi"]) == 10 for r in rows)
    urls = {e["fullUrl"] for e in bundle["entry"]}
    refs = [v["reference"] for e in bundle["entry"] for v in _references(e["resource"])]
    assert refs and all(r in urls for r in refs)
    assert sum(e["resource"]["resourceType"] == "ChargeItem" for e in bundle["entry"]) == len(lines)


def _references(node: object) -> list[dict[str, str]]:
    if isinstance(node, dict):
        found = [node] if isinstance(node.get("reference"), str) else []
        return found + [r for v in node.values() for r in _references(v)]
    if isinstance(node, list):
        return [r for v in node for r in _references(v)]
    return []
