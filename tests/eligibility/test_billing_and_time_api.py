"""Exports, the FastAPI router, the CLI and the time-entry API, on the real database."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from eligibility import billing, cli, timeentries
from eligibility.api import Caller, eligibility_router
from ingest.app import install_error_handlers
from rtm.cliutil import new_app, run_app
from tests.eligibility.factory import d, days_from


def _billed(scenario):
    s = scenario()
    s.days(days_from("2026-03-01", 16))
    s.time(25, "2026-03-05")
    s.compute("2026-04-15")
    return s


def test_csv_export_one_line_per_code(scenario):
    s = _billed(scenario)
    rows = list(csv.DictReader(io.StringIO(billing.export(s.conn, "csv", s.clinic, d("2026-03-01")))))
    assert {(r["code"], r["modifiers"]) for r in rows} == {("98975", "GP"), ("98977", "GP"), ("98980", "GP")}
    assert all(r["status"] == "final" and r["policy"] == "medicare-2026@2026.3" for r in rows)


def test_jsonl_export_has_explanations_reasons(scenario):
    s = _billed(scenario)
    lines = billing.export(s.conn, "jsonl", s.clinic, d("2026-03-01")).splitlines()
    docs = [orjson.loads(x) for x in lines]
    assert {doc["kind"] for doc in docs} == {"setup", "supply", "management"}
    assert all(doc["reason"] for doc in docs)


def test_fhir_bundle_of_charge_items(scenario):
    s = _billed(scenario)
    bundle = orjson.loads(billing.export(s.conn, "fhir", s.clinic, d("2026-03-01")))
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    items = [e["resource"] for e in bundle["entry"]]
    assert {i["code"]["coding"][0]["code"] for i in items} == {"98975", "98977", "98980"}
    item = items[0]
    assert item["resourceType"] == "ChargeItem" and item["status"] == "billable"
    assert item["subject"]["reference"] == f"Patient/{s.patient}"
    assert item["extension"][0]["valueCode"] == "GP"


def test_timer_start_stop_and_audit_trail(scenario):
    s = scenario()
    t0 = datetime(2026, 3, 5, 15, 0, tzinfo=UTC)
    start = timeentries.TimerStart(
        patient_id=s.patient, episode_id=s.episode, practitioner_id=s.therapist,
        activity="interactive_communication", channel="video", at=t0,
    )  # fmt: skip
    timer = timeentries.start_timer(s.conn, start)
    with pytest.raises(timeentries.TimeEntryError):
        timeentries.start_timer(s.conn, start)  # one running timer per practitioner
    entry = timeentries.stop_timer(s.conn, timer, at=t0 + timedelta(minutes=12, seconds=30))
    assert entry.minutes == Decimal("12.50")
    fixed = timeentries.correct_entry(
        s.conn, entry.entry_id, timeentries.Correction(reason="typo", minutes=10)
    )
    with pytest.raises(timeentries.TimeEntryError):
        timeentries.correct_entry(s.conn, entry.entry_id, timeentries.Correction(reason="again", minutes=9))
    trail = timeentries.history(s.conn, entry.entry_id)
    assert [(t["entry_id"], t["action"]) for t in trail] == [
        (entry.entry_id, "create"),
        (fixed.entry_id, "create"),
    ]


def test_reader_reads_summaries_only(db_settings, scenario):
    s = _billed(scenario)
    with psycopg.connect(db_settings.dsn("reader"), autocommit=True) as reader:
        assert billing.summaries(reader, clinic_id=s.clinic)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("select * from therapist_timers")


def test_api_router(db_settings, scenario):
    s = scenario()

    def conn() -> Iterator[psycopg.Connection]:
        with psycopg.connect(db_settings.dsn("writer"), autocommit=True) as c:
            yield c

    app = FastAPI()
    install_error_handlers(app)  # a refused request's typed error becomes the gateway's problem
    app.include_router(eligibility_router(conn, conn, lambda: Caller(s.clinic, "test-api")), prefix="/rtm")
    client = TestClient(app)
    body = {
        "patient_id": s.patient, "episode_id": s.episode, "practitioner_id": s.therapist,
        "activity": "interactive_communication", "channel": "video",
        "started_at": "2026-03-05T15:00:00Z", "minutes": "15",
    }  # fmt: skip
    created = client.post("/rtm/time-entries", json=body)
    assert created.status_code == 201, created.text
    bad = client.post("/rtm/time-entries", json={**body, "channel": "none", "entry_id": "x1"})
    assert bad.status_code == 422  # interactive communication needs a channel
    assert bad.json()["code"] == "invalid-request" and "channel" in bad.json()["detail"]
    listed = client.get("/rtm/time-entries", params={"patient_id": s.patient}).json()
    assert [e["entry_id"] for e in listed] == [created.json()["entry_id"]]
    s.days(["2026-03-02"])  # monitoring active in March
    s.compute("2026-04-15")
    summary = client.get("/rtm/billing/summaries", params={"clinic_id": s.clinic, "month": "2026-03"}).json()
    assert any(x["codes"] and x["codes"][0]["code"] == "98979" for x in summary)
    timer = {k: body[k] for k in ("patient_id", "episode_id", "practitioner_id", "activity", "channel")}
    assert client.post("/rtm/timers", json=timer).status_code == 201
    again = client.post("/rtm/timers", json=timer)  # a TimeEntryConflict: 409 by its type
    assert again.status_code == 409 and again.json()["code"] == "conflict", again.text


def test_cli_register_and_summary(db_settings, scenario, monkeypatch, capsys):
    s = _billed(scenario)
    dsn = db_settings.dsn("writer")
    monkeypatch.setattr(cli, "_connect", lambda role: psycopg.connect(dsn, autocommit=True))
    app = new_app("test")
    cli.register(app)
    assert run_app(app, ["billing", "release", "--clinic", s.clinic, "--month", "2026-03", "--dry-run"]) == 0
    assert "would release: 3 results" in capsys.readouterr().out
    # a refused request is one line on stderr and exit 1, no traceback
    assert run_app(app, ["time", "void", "no-such-entry", "--reason", "typo"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rtm: ") and "no-such-entry" in err and "Traceback" not in err
