"""The clinic app in a real headless browser (Debian's chromium driven by Playwright), with axe-core
checking every page for serious or critical accessibility violations. Screenshots go to a
temporary folder, so that a test run leaves the checkout as it was; with RTM_UPDATE_SCREENSHOTS=1
they replace docs/screenshots/ (shown in the README)."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingest.settings import get_gateway_settings
from ingest.tokens import hash_pairing_code, normalise_pairing_code
from tests.dashboards.conftest import PASSWORD, Clinics

pytestmark = pytest.mark.integration
playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
DOC_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SHOTS = DOC_SHOTS  # where _shot writes: set by the fixture below


@pytest.fixture(scope="module", autouse=True)
def _screenshot_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    global SHOTS
    SHOTS = DOC_SHOTS if os.environ.get("RTM_UPDATE_SCREENSHOTS") == "1" else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: run deploy/local/bootstrap.sh as root (it installs Debian's chromium)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _page(browser: Any, app_url: str) -> Any:
    # The app's CSP allows only its own scripts; the test injects axe-core from the file.
    ctx = browser.new_context(base_url=app_url, bypass_csp=True, viewport={"width": 1180, "height": 900},
                              accept_downloads=True)
    return ctx.new_page()


def _axe(page: Any) -> None:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [(v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]][:3])
           for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert bad == [], f"accessibility violations on {page.url}: {bad}"


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _sign_in(page: Any, email: str) -> None:
    page.goto("/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_a_clinic_day_in_the_browser(browser: Any, app_url: str, clinics: Clinics) -> None:
    page = _page(browser, app_url)
    p: Any = page
    _sign_in(p, clinics.a.email("therapist"))
    page.wait_for_url("**/queue")
    _axe(p)
    _shot(p, "queue")

    # Work the queue: acknowledge the first flag (htmx replaces its row).
    rows = page.locator("table.queue tbody tr[id^=flag-]")
    before = rows.count()
    assert before > 0
    first_id = int(rows.first.get_attribute("id").split("-")[1])
    rows.first.get_by_role("button", name=re.compile("^Acknowledge")).click()
    page.get_by_role("status").filter(has_text=f"Flag {first_id}: done").wait_for()
    with psycopg.connect(clinics.settings.dsn("owner")) as conn:
        assert conn.execute("select state from therapist_flags where flag_id = %s",
                            (first_id,)).fetchone() == ("acknowledged",)
    page.reload()
    assert page.locator("table.queue tbody tr[id^=flag-]").count() == before - 1

    # Onboard a patient; a bad diagnosis code is refused with a clear message and nothing is saved.
    page.get_by_role("link", name="Patients").click()
    page.get_by_role("link", name="New patient").click()
    _axe(p)
    page.get_by_label("External id (MRN)").fill("MRN-NEW-1")
    page.get_by_label("Time zone").fill("America/Chicago")
    page.get_by_label("Diagnosis codes (ICD-10)").fill("M17.11, banana")
    page.get_by_label("Consent obtained on").fill("2026-01-05")
    page.get_by_role("button", name="Save patient").click()
    page.get_by_role("alert").filter(has_text="BANANA").wait_for()
    page.get_by_label("Diagnosis codes (ICD-10)").fill("M17.11, Z96.651")
    page.get_by_role("button", name="Save patient").click()
    page.get_by_role("heading", name="Patient MRN-NEW-1").wait_for()
    new_patient_url = page.url

    # Prescribe, then enrol a device: a pairing code and its QR code.
    page.get_by_text("Add a prescription").click()
    page.get_by_label("Exercise").fill("knee_extension")
    page.get_by_label("Target ROM (°)").fill("95")
    page.get_by_role("button", name="Save prescription").click()
    page.get_by_text("knee_extension: 3 \u00d7 10, 5 days a week, target 95°").wait_for()
    page.get_by_text("Enrol a device").click()
    page.get_by_label("Device id (serial)").fill("SN-NEW-0001")
    page.get_by_role("button", name="Create pairing code").click()
    code = page.locator("#pairing-code").inner_text()
    assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}", code)
    assert page.locator(".qr svg").count() == 1
    _axe(p)
    _shot(p, "pairing")
    pepper = get_gateway_settings().pepper_bytes(clinics.settings.secrets_dir)
    with psycopg.connect(clinics.settings.dsn("owner")) as conn:
        row = conn.execute("select device_id, clinic, redeemed_at from ingest_pairing_codes where code_hash = %s",
                           (hash_pairing_code(pepper, normalise_pairing_code(code) or ""),)).fetchone()
    assert row == ("SN-NEW-0001", "clinic-a", None)
    page.goto(new_patient_url)
    _axe(p)

    # Log time on a monitored patient until the month reaches 98980 (20 min with interactive contact).
    with psycopg.connect(clinics.settings.dsn("owner")) as conn:
        pid, ref = conn.execute(
            """select p.patient_id, p.external_ref from patients p join data_day_facts f using (patient_id)
                where p.clinic_id = 'clinic-a' and f.qualifying and f.local_date >= date_trunc('month', now())::date
                group by 1, 2 order by count(*) desc limit 1""").fetchone()
    page.goto(f"/patients/{pid}")
    _axe(p)
    page.get_by_label("Minutes").fill("12")
    page.get_by_label("Activity").select_option("interactive_communication")
    page.get_by_label("Channel").select_option("video")
    page.get_by_role("button", name="Log time").click()
    page.locator("#minutes-text").filter(has_text="12 minutes: 98979; 8 more for 98980").wait_for()
    page.get_by_role("button", name="Start timer").click()
    page.get_by_role("button", name="Stop timer").wait_for()
    page.wait_for_timeout(1500)  # minutes are kept to 0.01: a timer stopped within 0.6 s has run for none
    page.get_by_role("button", name="Stop timer").click()
    page.get_by_role("button", name="Start timer").wait_for()
    page.get_by_label("Minutes").fill("9")
    page.get_by_label("Activity").select_option("data_review")
    page.get_by_label("Channel").select_option("none")
    # Earlier today, so that it does not overlap the first entry (one person's overlapping minutes count once).
    earlier = max(datetime.now(UTC) - timedelta(hours=2), datetime.now(UTC).replace(day=1, hour=0, minute=0))
    page.get_by_label("Started at (UTC, optional)").fill(earlier.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Log time").click()
    page.locator("#minutes-text").filter(has_text=re.compile(r"^2\d(\.\d+)? minutes: 98980")).wait_for()
    _shot(p, "patient")
    page.get_by_role("button", name="Sign out").click()

    # The biller sees 98980 and exports claims (CSV, RFC 4180) and FHIR.
    _sign_in(p, clinics.a.email("biller"))
    page.wait_for_url("**/billing")
    row = page.locator("table.billing tr", has_text=ref).filter(has_text="98980")
    row.first.wait_for()
    _axe(p)
    _shot(p, "billing")
    with page.expect_download() as dl:
        page.locator("#export-csv").click()
    raw = Path(dl.value.path()).read_bytes()
    assert b"\r\n" in raw and not re.search(rb"[^\r]\n", raw)
    lines = list(csv.DictReader(io.StringIO(raw.decode())))
    mine = [ln for ln in lines if ln["patient_external_id"] == ref and ln["cpt"] == "98980"]
    assert len(mine) == 1, (ref, lines[:5])
    assert mine[0]["icd10_pointers"] == "AB" and re.fullmatch(r"\d{10}", mine[0]["billing_npi"])
    fhir = page.request.get("/billing/claims.fhir.json")
    assert fhir.ok and '"98980"' in fhir.text()
    page.get_by_role("button", name="Sign out").click()

    # Another clinic's therapist is refused the first clinic's patient (the database hides it).
    _sign_in(p, clinics.b.email("therapist"))
    page.wait_for_url("**/queue")
    resp = page.goto(f"/patients/{pid}")
    assert resp.status == 404
    assert ref not in page.content()
    _shot(p, "refused")


def test_admin_staff_and_edit_pages_in_the_browser(browser: Any, app_url: str, clinics: Clinics) -> None:
    """The admin's staff page and the edit forms: keyboard-labelled, field messages, axe-clean."""
    page = _page(browser, app_url)
    p: Any = page
    _sign_in(p, clinics.a.email("admin"))
    page.get_by_role("link", name=re.compile("change your password")).click()
    page.get_by_role("heading", name="Change your password").wait_for()
    _axe(p)
    page.get_by_role("link", name="Staff").click()
    page.get_by_role("heading", name="Staff of the clinic").wait_for()
    _axe(p)
    invite = page.get_by_role("region", name="Invite a person")
    invite.get_by_label("E-mail").fill("ot.new@clinic-a.example")
    invite.get_by_label("Name").fill("Olive Therapist")
    invite.get_by_label("Role", exact=True).select_option("therapist")
    invite.get_by_label("Discipline (therapists, assistants)").select_option("OT")
    invite.get_by_label("NPI (therapists, 10 digits)").fill("1234567890")
    invite.get_by_role("button", name="Create account").click()
    page.locator("#npi-error").filter(has_text="check digit").wait_for()
    assert invite.get_by_label("NPI (therapists, 10 digits)").get_attribute("aria-invalid") == "true"
    _axe(p)
    from dashboards.auth import npi_with_check_digit

    invite.get_by_label("NPI (therapists, 10 digits)").fill(npi_with_check_digit("987654321"))
    invite.get_by_role("button", name="Create account").click()
    temp = page.locator("#temporary-password").inner_text()
    assert len(temp) >= 16
    page.locator("tr", has_text="ot.new@clinic-a.example").get_by_role("button", name=re.compile("^Deactivate")).click()
    page.locator("tr", has_text="ot.new@clinic-a.example").filter(has_text="deactivated").wait_for()
    _axe(p)
    _shot(p, "staff")

    # Edit a patient: a bad time zone is named next to its field; then the edit is saved.
    pid = clinics.a_patients[4]
    page.goto(f"/patients/{pid}")
    page.get_by_role("link", name="Edit patient").click()
    _axe(p)
    page.get_by_label("Time zone (from now on)").fill("Atlantis/Deep")
    page.get_by_role("button", name="Save changes").click()
    page.locator("#tz-error").filter(has_text="not an IANA time zone").wait_for()
    _axe(p)
    page.get_by_label("Time zone (from now on)").fill("America/Phoenix")
    page.get_by_label("External id (MRN)").fill("MRN-BROWSER-EDIT")
    page.get_by_role("button", name="Save changes").click()
    page.get_by_role("heading", name="Patient MRN-BROWSER-EDIT").wait_for()

    # Edit its episode: a plan of care ending before it starts is refused, nothing saved.
    page.get_by_role("link", name=re.compile("^Edit episode")).first.click()
    _axe(p)
    page.get_by_label("Plan of care from").fill("2026-02-01")
    page.get_by_label("Plan of care until").fill("2026-01-01")
    page.get_by_role("button", name="Save changes").click()
    page.locator("#plan_of_care_end-error").filter(has_text="the plan of care ends before it starts").wait_for()
    _axe(p)
    _shot(p, "episode-edit")
    page.get_by_label("Plan of care until").fill("2026-04-30")
    page.get_by_role("button", name="Save changes").click()
    page.get_by_role("heading", name="Patient MRN-BROWSER-EDIT").wait_for()
    with psycopg.connect(clinics.settings.dsn("owner")) as conn:
        poc = conn.execute("select plan_of_care_start, plan_of_care_end from episodes where patient_id = %s",
                           (pid,)).fetchone()  # fmt: skip
    assert [d.isoformat() for d in poc] == ["2026-02-01", "2026-04-30"]
