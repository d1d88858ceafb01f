"""The billing view reads the failed gates from their own column (migration 0841), which the
eligibility writer fills: it must say exactly what each stored explanation says."""

from __future__ import annotations

import re
from datetime import date

import httpx
import psycopg
import pytest

from eligibility import billing
from eligibility.store import recompute_patients
from tests.dashboards.conftest import PASSWORD, Clinics

pytestmark = pytest.mark.integration

_FROM_EXPLANATION = """array(select g->>'name' from json_array_elements(explanation->'gates') g
                            where not (g->>'passed')::boolean)"""


def test_failed_gates_column_matches_the_explanations_and_shows_on_the_billing_view(
    clinics: Clinics, app_url: str
) -> None:
    pid = clinics.a_patients[1]
    with psycopg.connect(clinics.settings.dsn("owner"), autocommit=True) as owner:
        owner.execute("update episodes set consent_at = null where patient_id = %s", (pid,))
        ref = owner.execute("select external_ref from patients where patient_id = %s", (pid,)).fetchone()[0]
    with psycopg.connect(clinics.settings.dsn("writer"), autocommit=True) as writer:
        stats = recompute_patients(writer, [pid], date.today())
        assert stats.saved.updated > 0  # the answers changed: rows rewritten by the writer
        rows = writer.execute(
            f"select patient_id, gates_failed, {_FROM_EXPLANATION} from eligibility_results").fetchall()
        assert len(rows) > 20
        assert [r for r in rows if r[1] != r[2]] == []
        assert any("consent" in r[1] for r in rows if r[0] == pid)
        assert all("consent" not in r[1] for r in rows if r[0] != pid)

        month = date.today().replace(day=1)
        lean = {s.result_key: s for s in billing.summaries(writer, clinic_id="clinic-a", month=month)}
        full = {s.result_key: s for s in billing.summaries(writer, clinic_id="clinic-a", month=month,
                                                           with_explanation=True)}  # fmt: skip
        assert lean.keys() == full.keys() and lean
        for key, s in lean.items():
            assert s.explanation is None and full[key].explanation is not None
            assert s.gates_failed == [g["name"] for g in full[key].explanation["gates"] if not g["passed"]]

    with httpx.Client(base_url=app_url) as c:
        c.post("/login", data={"email": clinics.a.email("biller"), "password": PASSWORD})
        page = c.get("/billing")
        assert page.status_code == 200
    cells = re.findall(rf"<tr><td>{re.escape(ref)}</td>(.*?)</tr>", page.text)
    assert cells and any("consent" in row for row in cells)
    others = re.findall(r"<tr><td>([^<]+)</td>(.*?)</tr>", page.text)
    assert len(others) > len(cells) and all("consent" not in row for name, row in others if name != ref)
