"""Therapist time and billing summaries served by the gateway: clinic API keys only, each clinic
confined to its own patients, the audit trail naming the key and the person, problem details."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient

from ingest.tokens import CLINIC_PREFIX, DEVICE_PREFIX, hash_secret, new_token
from rtm.settings import Settings
from tests.eligibility.factory import Scenario, days_from
from tests.ingest.conftest import PEPPER, enrol, make_care
from tests.ingest.test_upload import assert_problem


@dataclass(frozen=True)
class Clinic:
    s: Scenario
    key_id: str
    token: str

    def headers(self, actor: str | None = None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token}"}
        if actor is not None:
            h["X-Actor"] = actor
        return h

    def entry(self, **over: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "patient_id": self.s.patient, "episode_id": self.s.episode, "practitioner_id": self.s.therapist,
            "activity": "interactive_communication", "channel": "video",
            "started_at": "2026-03-05T15:00:00Z", "minutes": "15",
        }  # fmt: skip
        body.update(over)
        return body


def clinic_with_key(db: psycopg.Connection[Any], owner_db: psycopg.Connection[Any]) -> Clinic:
    s = Scenario(db)
    key_id, secret, token = new_token(CLINIC_PREFIX)
    owner_db.execute(  # an operator's act: the writer role cannot create clinic keys
        "insert into ingest_clinic_keys (key_id, clinic_id, secret_hash) values (%s, %s, %s)",
        (key_id, s.clinic, hash_secret(PEPPER.encode(), secret)),
    )
    return Clinic(s, key_id, token)


@pytest.fixture()
def a(db: psycopg.Connection[Any], owner_db: psycopg.Connection[Any]) -> Clinic:
    return clinic_with_key(db, owner_db)


@pytest.fixture()
def b(db: psycopg.Connection[Any], owner_db: psycopg.Connection[Any]) -> Clinic:
    return clinic_with_key(db, owner_db)


def test_create_correct_void_list_and_audit_trail(client: TestClient, a: Clinic) -> None:
    created = client.post("/v1/time-entries", json=a.entry(), headers=a.headers("pt-jane"))
    assert created.status_code == 201, created.text
    entry = created.json()
    assert entry["minutes"] == "15.00" and entry["recorded_by"] == f"clinic-key:{a.key_id}/pt-jane"

    fixed = client.post(
        f"/v1/time-entries/{entry['entry_id']}/corrections",
        json={"reason": "was 12 minutes", "minutes": "12"},
        headers=a.headers("pt-joe"),
    )
    assert fixed.status_code == 201, fixed.text
    assert fixed.json()["supersedes"] == entry["entry_id"]
    again = client.post(
        f"/v1/time-entries/{entry['entry_id']}/corrections", json={"reason": "again", "minutes": "9"},
        headers=a.headers(),
    )  # fmt: skip
    assert_problem(again, 409, "conflict")  # correct the correction, not the original twice

    listed = client.get("/v1/time-entries", params={"patient_id": a.s.patient}, headers=a.headers())
    assert [e["entry_id"] for e in listed.json()] == [fixed.json()["entry_id"]]
    everything = client.get(
        "/v1/time-entries", params={"patient_id": a.s.patient, "month": "2026-03", "include_replaced": True},
        headers=a.headers(),
    )  # fmt: skip
    assert {e["entry_id"] for e in everything.json()} == {entry["entry_id"], fixed.json()["entry_id"]}

    voided = client.post(
        f"/v1/time-entries/{fixed.json()['entry_id']}/void", json={"reason": "wrong patient"}, headers=a.headers()
    )
    assert voided.status_code == 200 and voided.json()["voided_at"], voided.text
    assert client.get("/v1/time-entries", params={"patient_id": a.s.patient}, headers=a.headers()).json() == []

    trail = client.get(f"/v1/time-entries/{entry['entry_id']}/history", headers=a.headers()).json()
    assert [(t["entry_id"], t["action"], t["actor"]) for t in trail] == [
        (entry["entry_id"], "create", f"clinic-key:{a.key_id}/pt-jane"),
        (fixed.json()["entry_id"], "create", f"clinic-key:{a.key_id}/pt-joe"),
        (fixed.json()["entry_id"], "update", f"clinic-key:{a.key_id}"),  # the void, without X-Actor
    ]


def test_timer_start_stop_records_the_actor(client: TestClient, a: Clinic) -> None:
    start = {k: v for k, v in a.entry().items() if k not in ("started_at", "minutes")}
    start["at"] = (datetime.now(UTC) - timedelta(minutes=12)).isoformat()
    timer = client.post("/v1/timers", json=start, headers=a.headers("pt-jane"))
    assert timer.status_code == 201, timer.text
    assert_problem(client.post("/v1/timers", json=start, headers=a.headers()), 409, "conflict")
    stopped = client.post("/v1/timers/stop", json={"timer_id": timer.json()["timer_id"]}, headers=a.headers("pt-jane"))
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["recorded_by"] == f"clinic-key:{a.key_id}/pt-jane"
    assert_problem(client.post("/v1/timers/stop", json={}, headers=a.headers()), 422, "invalid-request")


def test_device_credential_gets_403(client: TestClient, db_settings: Settings, a: Clinic) -> None:
    device = enrol(client, make_care(db_settings))
    for r in (
        client.get("/v1/time-entries", params={"patient_id": device.care.patient_id}, headers=device.headers),
        client.post("/v1/time-entries", json=a.entry(), headers=device.headers),
        client.get("/v1/billing/summaries", headers=device.headers),
    ):
        assert_problem(r, 403, "forbidden")


def test_missing_or_invalid_key_gets_401(client: TestClient, a: Clinic) -> None:
    _, _, stranger = new_token(CLINIC_PREFIX)
    wrong_secret = a.token[:-4] + ("AAAA" if not a.token.endswith("AAAA") else "BBBB")
    _, _, fake_device = new_token(DEVICE_PREFIX)
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Bearer {stranger}"},
        {"Authorization": f"Bearer {wrong_secret}"},
        {"Authorization": f"Bearer {fake_device}"},  # shaped like a device token, but unknown
    ):
        r = client.post("/v1/time-entries", json=a.entry(), headers=headers)
        assert_problem(r, 401, "unauthenticated")
        assert r.headers["www-authenticate"].startswith("Bearer")
    # authentication comes before the body is looked at
    assert_problem(client.post("/v1/time-entries", json={"x": 1}), 401, "unauthenticated")


def test_bad_actor_header_is_refused(client: TestClient, a: Clinic) -> None:
    r = client.post("/v1/time-entries", json=a.entry(), headers=a.headers("Jane Doe <jane@x>"))
    assert_problem(r, 422, "invalid-request")


def test_another_clinics_patient_is_not_found(client: TestClient, a: Clinic, b: Clinic) -> None:
    mine = client.post("/v1/time-entries", json=a.entry(), headers=a.headers()).json()["entry_id"]
    # B names A's patient, episode, practitioner, entry: each is "not found", as if it did not exist
    for r in (
        client.post("/v1/time-entries", json=a.entry(), headers=b.headers()),
        client.post(
            "/v1/time-entries", json=b.entry(episode_id=a.s.episode, patient_id=b.s.patient), headers=b.headers()
        ),
        client.post("/v1/time-entries", json=b.entry(practitioner_id=a.s.therapist), headers=b.headers()),
        client.get("/v1/time-entries", params={"patient_id": a.s.patient}, headers=b.headers()),
        client.get("/v1/time-entries", params={"patient_id": "nobody-at-all"}, headers=b.headers()),
        client.post(f"/v1/time-entries/{mine}/corrections", json={"reason": "mine now"}, headers=b.headers()),
        client.post(f"/v1/time-entries/{mine}/void", json={"reason": "gone now"}, headers=b.headers()),
        client.get(f"/v1/time-entries/{mine}/history", headers=b.headers()),
        client.post("/v1/timers/stop", json={"practitioner_id": a.s.therapist}, headers=b.headers()),
        client.get("/v1/billing/summaries", params={"patient_id": a.s.patient}, headers=b.headers()),
    ):
        body = assert_problem(r, 404, "not-found")
        assert a.s.patient not in body.get("detail", "")
    # B's own entry cannot be moved onto A's episode by a correction
    own = client.post("/v1/time-entries", json=b.entry(), headers=b.headers()).json()["entry_id"]
    moved = client.post(
        f"/v1/time-entries/{own}/corrections", json={"reason": "move", "episode_id": a.s.episode}, headers=b.headers()
    )
    assert_problem(moved, 404, "not-found")
    # a clinic_id parameter cannot widen what a key sees
    for path in ("/v1/billing/summaries", "/v1/billing/amendments"):
        assert_problem(client.get(path, params={"clinic_id": a.s.clinic}, headers=b.headers()), 403, "forbidden")
    r = client.get("/v1/billing/export", params={"clinic_id": a.s.clinic, "month": "2026-03"}, headers=b.headers())
    assert_problem(r, 403, "forbidden")
    # nothing of A changed
    listed = client.get("/v1/time-entries", params={"patient_id": a.s.patient}, headers=a.headers()).json()
    assert [(e["entry_id"], e["voided_at"]) for e in listed] == [(mine, None)]


def test_summaries_and_exports_hold_only_the_own_clinic(client: TestClient, a: Clinic, b: Clinic) -> None:
    for c in (a, b):
        c.s.days(days_from("2026-03-01", 16))
        r = client.post("/v1/time-entries", json=c.entry(minutes="25"), headers=c.headers())
        assert r.status_code == 201, r.text
        c.s.compute("2026-04-15")

    summaries = client.get("/v1/billing/summaries", params={"month": "2026-03"}, headers=b.headers())
    assert summaries.status_code == 200, summaries.text
    assert summaries.json() and {x["patient_id"] for x in summaries.json()} == {b.s.patient}
    assert {x["clinic_id"] for x in summaries.json()} == {b.s.clinic}
    own = client.get(
        "/v1/billing/summaries", params={"clinic_id": b.s.clinic, "patient_id": b.s.patient}, headers=b.headers()
    )
    assert {x["patient_id"] for x in own.json()} == {b.s.patient}

    exported = client.get("/v1/billing/export", params={"month": "2026-03"}, headers=b.headers())
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {(r["patient_id"], r["code"]) for r in rows} == {
        (b.s.patient, "98975"), (b.s.patient, "98977"), (b.s.patient, "98980"),
    }  # fmt: skip
    for fmt in ("jsonl", "fhir"):
        text = client.get("/v1/billing/export", params={"month": "2026-03", "format": fmt}, headers=b.headers()).text
        assert b.s.patient in text and a.s.patient not in text
    bundle = orjson.loads(
        client.get("/v1/billing/export", params={"month": "2026-03", "format": "fhir"}, headers=a.headers()).text
    )
    assert {e["resource"]["subject"]["reference"] for e in bundle["entry"]} == {f"Patient/{a.s.patient}"}
    assert client.get("/v1/billing/amendments", headers=b.headers()).json() == []


def test_openapi_lists_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/time-entries", "/v1/time-entries/{entry_id}/corrections", "/v1/time-entries/{entry_id}/void",
        "/v1/time-entries/{entry_id}/history", "/v1/timers", "/v1/timers/stop", "/v1/billing/summaries",
        "/v1/billing/export", "/v1/billing/amendments",
    ):  # fmt: skip
        assert path in paths
    params = {p["name"] for p in paths["/v1/time-entries"]["post"]["parameters"]}
    assert "x-actor" in params


def test_no_patient_data_in_logs(client: TestClient, a: Clinic, b: Clinic, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        entry = client.post("/v1/time-entries", json=a.entry(), headers=a.headers("pt-jane")).json()["entry_id"]
        client.get("/v1/time-entries", params={"patient_id": a.s.patient}, headers=a.headers())
        client.get("/v1/time-entries", params={"patient_id": a.s.patient}, headers=b.headers())
        client.get(f"/v1/time-entries/{entry}/history", headers=a.headers())
        client.get("/v1/billing/summaries", params={"patient_id": a.s.patient}, headers=a.headers())
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert "/v1/time-entries" in text  # the access log names the route template
    for secret in (a.s.patient, a.s.episode, entry, "pt-jane"):
        assert secret not in text


def test_a_client_chosen_entry_id_reveals_nothing_about_another_clinic(
    client: TestClient, a: Clinic, b: Clinic
) -> None:
    first = client.post("/v1/time-entries", json=a.entry(entry_id="visit-0042"), headers=a.headers())
    assert first.status_code == 201, first.text
    # Clinic B picks the same id: its own entry, not a 409 that would tell it A has one.
    other = client.post("/v1/time-entries", json=b.entry(entry_id="visit-0042"), headers=b.headers())
    assert other.status_code == 201, other.text
    assert other.json()["entry_id"] != first.json()["entry_id"]
    # Within a clinic the id still makes retries idempotent, and other content under it is a conflict.
    again = client.post("/v1/time-entries", json=b.entry(entry_id="visit-0042"), headers=b.headers())
    assert again.status_code == 201 and again.json()["entry_id"] == other.json()["entry_id"]
    changed = client.post("/v1/time-entries", json=b.entry(entry_id="visit-0042", minutes="20"), headers=b.headers())
    assert_problem(changed, 409, "conflict")
