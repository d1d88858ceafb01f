"""Alerts for new high-severity flags: configured by the clinic admin in the app, delivered through
a real HTTP receiver (signed webhook) and a real SMTP server (e-mail digest), once each, retried
with back-off when the receiver fails, against the real database."""

from __future__ import annotations

import email
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg
import pytest
from aiosmtpd.controller import Controller

from dashboards import alerts
from dashboards.settings import AppSettings
from tests.dashboards.conftest import PASSWORD, Clinics, _free_port

pytestmark = pytest.mark.integration


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)  # what to answer next; 200 when empty
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    rec = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            rec.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status = rec.statuses.pop(0) if rec.statuses else 200
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/rtm"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()


class Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


@pytest.fixture()
def smtp() -> Iterator[tuple[Sink, int]]:
    sink, port = Sink(), _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m
    return m.group(1)


def _raise_flag(conn: psycopg.Connection[Any], clinic: str, severity: str) -> int:
    """A new open flag of the clinic, as the evaluator would write it (a patient and kind with none live)."""
    row = conn.execute(
        """insert into therapist_flags (patient_id, clinic_id, kind, severity, evidence, raised_at, updated_at)
           select p.patient_id, p.clinic_id, k, %s, '{"reason": "test flag"}', now(), now()
             from patients p cross join unnest(array['rom_drop', 'rom_trend', 'reps_below_dose', 'no_data',
                                                     'adherence_falling']) k
            where p.clinic_id = %s and not exists (select 1 from therapist_flags f where f.patient_id = p.patient_id
                                                      and f.kind = k and f.state <> 'resolved')
            limit 1 returning flag_id""",
        (severity, clinic),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _wait_until_due(conn: psycopg.Connection[Any], delivery_id: str) -> None:
    """Sleep until the delivery's next attempt is due (by the database's clock)."""
    row = conn.execute("""select extract(epoch from next_attempt_at - clock_timestamp())
                            from app_alert_deliveries where delivery_id = %s""", (delivery_id,)).fetchone()
    assert row is not None
    time.sleep(max(float(row[0]), 0.0) + 0.2)


def test_admin_configures_alerts_and_each_new_high_flag_is_sent_once(
    clinics: Clinics, app_url: str, receiver: Receiver, smtp: tuple[Sink, int]
) -> None:
    sink, smtp_port = smtp
    with httpx.Client(base_url=app_url, follow_redirects=True) as c:
        c.post("/login", data={"email": clinics.a.email("admin"), "password": PASSWORD})
        page = c.get("/admin/alerts")
        assert page.status_code == 200 and "Nothing sent yet" in page.text
        token = _csrf(page.text)
        bad = c.post("/admin/alerts", data={"csrf": token, "webhook_url": "ftp://x", "email_to": ""})
        assert bad.status_code == 422 and "must start with https://" in bad.text
        bad = c.post("/admin/alerts", data={"csrf": token, "webhook_url": "", "email_to": "not-an-address"})
        assert bad.status_code == 422 and "not e-mail addresses: not-an-address" in bad.text
        assert c.post("/admin/alerts", data={"webhook_url": receiver.url}).status_code == 403  # no CSRF token
        r = c.post("/admin/alerts", data={"csrf": token, "webhook_url": receiver.url,
                                          "email_to": "Lead@clinic-a.example, desk@clinic-a.example"})
        assert r.status_code == 200
        m = re.search(r'id="webhook-secret">(whsec_[^<]+)<', r.text)
        assert m
        secret = m.group(1)
    with httpx.Client(base_url=app_url) as c:  # a therapist may not change it
        c.post("/login", data={"email": clinics.a.email("therapist"), "password": PASSWORD})
        assert c.get("/admin/alerts").status_code == 403

    a = AppSettings(smtp_host="127.0.0.1", smtp_port=smtp_port, smtp_from="alerts@rtm.example",
                    public_url="https://app.clinic-a.example", alert_retry_base_s=4.0, alert_max_attempts=3)
    owner = psycopg.connect(clinics.settings.dsn("owner"), autocommit=True)
    writer = psycopg.connect(clinics.settings.dsn("writer"), autocommit=True)
    try:
        # The seeded flags existed before alerts were switched on: none is sent.
        first = alerts.run_round(writer, a)
        assert (first.planned, first.sent) == (0, 0) and receiver.calls == [] and sink.messages == []

        high = [_raise_flag(owner, "clinic-a", "high") for _ in range(2)]
        _raise_flag(owner, "clinic-a", "medium")  # not high: no alert
        _raise_flag(owner, "clinic-b", "high")  # clinic B has no alerts configured
        receiver.statuses = [500]  # the receiver is down at first
        r1 = alerts.run_round(writer, a)
        assert (r1.planned, r1.sent, r1.retried, r1.failed) == (2, 1, 1, 0)
        assert len(sink.messages) == 1 and len(receiver.calls) == 1
        rcpts, msg = sink.messages[0]
        assert sorted(rcpts) == ["desk@clinic-a.example", "lead@clinic-a.example"]
        assert msg["Subject"] == "RTM: 2 new high-severity flags"
        text = msg.get_payload(decode=True).decode()  # type: ignore[union-attr]
        assert "https://app.clinic-a.example/patients/" in text and "test flag" in text
        webhook_row = writer.execute(
            """select delivery_id, state, attempts, next_attempt_at > now(), last_error, flag_ids
                 from app_alert_deliveries where channel = 'webhook'""").fetchall()  # fmt: skip
        assert len(webhook_row) == 1
        wid, state, attempts, later, err, flag_ids = webhook_row[0]
        assert (state, attempts, later) == ("pending", 1, True) and err.startswith("HTTP 500")
        assert sorted(flag_ids) == sorted(high)
        assert msg["Message-ID"].startswith("<msg_")

        # Back-off: nothing is retried before it is due.
        assert alerts.run_round(writer, a).sent == 0 and len(receiver.calls) == 1
        _wait_until_due(writer, wid)
        r2 = alerts.run_round(writer, a)
        assert (r2.planned, r2.sent) == (0, 1) and len(receiver.calls) == 2
        (h1, b1), (h2, b2) = receiver.calls
        assert h1["webhook-id"] == h2["webhook-id"] == wid and b1 == b2  # the same message, retried
        assert alerts.verify(secret, h2, b2)
        assert not alerts.verify(secret, h2, b2.replace(b"high", b"HIGH"))  # a changed body fails
        assert not alerts.verify(alerts.new_secret(), h2, b2)  # so does another secret
        event = json.loads(b2)
        assert event["type"] == alerts.EVENT_TYPE and event["data"]["clinic_id"] == "clinic-a"
        assert sorted(f["flag_id"] for f in event["data"]["flags"]) == sorted(high)
        assert {f["severity"] for f in event["data"]["flags"]} == {"high"}

        # Never twice: another round sends nothing; a new flag goes alone.
        again = alerts.run_round(writer, a)
        assert (again.planned, again.sent) == (0, 0) and len(receiver.calls) == 2 and len(sink.messages) == 1
        newer = _raise_flag(owner, "clinic-a", "high")
        r3 = alerts.run_round(writer, a)
        assert (r3.planned, r3.sent) == (2, 2)
        assert [f["flag_id"] for f in json.loads(receiver.calls[2][1])["data"]["flags"]] == [newer]
        assert sink.messages[1][1]["Subject"] == "RTM: 1 new high-severity flag"

        # A receiver that stays down: retried with back-off, then given up (recorded, not lost).
        receiver.statuses = [503] * 10
        _raise_flag(owner, "clinic-a", "high")
        assert alerts.run_round(writer, a).retried == 1
        down = writer.execute("""select delivery_id from app_alert_deliveries where channel = 'webhook'
                                  order by created_at desc limit 1""").fetchone()[0]
        for _ in range(2):
            _wait_until_due(writer, down)
            alerts.run_round(writer, a)
        rows = writer.execute("""select channel, state, attempts from app_alert_deliveries
                                  order by created_at desc limit 2""").fetchall()
        assert sorted(map(tuple, rows)) == [("email", "sent", 1), ("webhook", "failed", 3)]
        per_flag = writer.execute(
            "select flag_id, channel, count(*) from app_alert_flags group by 1, 2 having count(*) > 1").fetchall()
        assert per_flag == []
    finally:
        owner.close()
        writer.close()

    # The admin sees what was sent; another clinic's admin sees none of it.
    with httpx.Client(base_url=app_url) as c:
        c.post("/login", data={"email": clinics.a.email("admin"), "password": PASSWORD})
        page = c.get("/admin/alerts").text
        assert wid in page and "failed" in page
    with httpx.Client(base_url=app_url) as c:
        c.post("/login", data={"email": clinics.b.email("admin"), "password": PASSWORD})
        page = c.get("/admin/alerts").text
        assert "Nothing sent yet" in page and wid not in page and "whsec_" not in page


def test_signature_is_standard_webhooks() -> None:
    """The example of the Standard Webhooks specification's reference libraries."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    sig = alerts.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_alert_loop_waits_for_a_database_that_is_away_and_says_so() -> None:
    """`rtm app alerts` outlives a database that is down (a restart): it says so and backs off,
    instead of dying with a traceback; `--once` (a cron job) fails with the reason."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    rtm = str(Path(sys.executable).with_name("rtm"))
    env = {**os.environ, "RTM_PG_PORT": str(_free_port())}  # nothing listens there
    once = subprocess.run([rtm, "app", "alerts", "--once"], env=env, capture_output=True, text=True, timeout=60)
    assert once.returncode != 0 and "connection failed" in once.stderr
    loop = subprocess.Popen([rtm, "app", "alerts"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert loop.stderr is not None
        said = [loop.stderr.readline() for _ in range(2)]
        assert loop.poll() is None  # still running, waiting for the database
        assert [re.sub(r"\d+ s$", "N s", line.strip()) for line in said] == \
            ["alerts: the database is unavailable (OperationalError); trying again in N s"] * 2
        assert [int(re.findall(r"(\d+) s$", line.strip())[0]) for line in said] == [1, 2]  # backing off
    finally:
        loop.terminate()
        loop.wait(timeout=10)
