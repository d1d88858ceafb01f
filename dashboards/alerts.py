"""Alerts for new high-severity flags: a clinic's signed outbound webhook and/or e-mail digest.

A dispatcher round (`rtm app alerts`) first *plans*: for each clinic with alerts configured, the
open high-severity flags made after alerts were switched on and not yet in a delivery of that
channel become one delivery (one webhook call, one digest e-mail), recorded with its exact payload
before anything is sent; the primary key (flag, channel) of `app_alert_flags` keeps a flag out of
a second delivery. Then it *sends* the due deliveries, each under a row lock (`for update skip
locked`: two dispatchers never send the same one), and records the outcome in the same
transaction; a failure is retried after an exponential back-off, until `alert_max_attempts`.
Were the process to die between a receiver's acceptance and that commit, the delivery is sent
again with the same id (`webhook-id`, `Message-ID`), which receivers use to drop the repeat.

Webhooks are signed as Standard Webhooks specifies: headers `webhook-id`, `webhook-timestamp`
(Unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 over "id.timestamp.body">` with the
secret's bytes (`whsec_<base64>`). Runs as the writer role: it serves every clinic.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import smtplib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
import psycopg

from dashboards.records import reason_in_words
from dashboards.settings import AppSettings

log = logging.getLogger(__name__)
Conn = psycopg.Connection[Any]
PLAN_LOCK = 0x52544D_A1  # one planner at a time per database (advisory lock)
EVENT_TYPE = "flags.high_severity"


def new_secret() -> str:
    """A webhook signing secret in Standard Webhooks' form: 'whsec_' + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value (Standard Webhooks, v1: HMAC-SHA256, base64)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300, now: float | None = None) -> bool:
    """What a receiver does: the timestamp is recent and one of the signatures matches."""
    try:
        ts = int(headers["webhook-timestamp"])
        expected = sign(secret, headers["webhook-id"], ts, body)
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - ts) > tolerance_s:
        return False
    return any(hmac.compare_digest(expected, s) for s in headers.get("webhook-signature", "").split())


# ------------------------------------------------------------------------------ settings --------


@dataclass(frozen=True)
class ClinicAlerts:
    clinic_id: str
    webhook_url: str | None
    webhook_secret: str | None
    email_to: list[str]
    enabled_since: datetime


def load_settings(conn: Conn, clinic_id: str) -> ClinicAlerts | None:
    row = conn.execute(
        """select clinic_id, webhook_url, webhook_secret, email_to, enabled_since from app_alert_settings
            where clinic_id = %s""", (clinic_id,)).fetchone()  # fmt: skip
    return ClinicAlerts(*row) if row else None


def save_settings(conn: Conn, clinic_id: str, webhook_url: str | None, emails: list[str], by: str,
                  rotate_secret: bool = False) -> ClinicAlerts:  # fmt: skip
    """The admin's form (on the clinic's own connection). Raises ValueError naming what is wrong."""
    url = (webhook_url or "").strip() or None
    if url is not None and not (url.startswith("https://") or url.startswith("http://")):
        raise ValueError("the webhook URL must start with https:// (or http:// inside the clinic's network)")
    bad = [e for e in emails if "@" not in e or any(c.isspace() for c in e) or len(e) > 254]
    if bad:
        raise ValueError(f"not e-mail addresses: {', '.join(bad)}")
    old = load_settings(conn, clinic_id)
    secret = old.webhook_secret if old and old.webhook_secret and not rotate_secret else None
    if url is not None and secret is None:
        secret = new_secret()
    conn.execute(
        """insert into app_alert_settings (clinic_id, webhook_url, webhook_secret, email_to, updated_by,
                                          after_flag_id)
           values (%s, %s, %s, %s, %s, (select coalesce(max(flag_id), 0) from therapist_flags))
           on conflict (clinic_id) do update set webhook_url = excluded.webhook_url,
               webhook_secret = excluded.webhook_secret, email_to = excluded.email_to,
               updated_by = excluded.updated_by, updated_at = now()""",
        (clinic_id, url, secret, emails, by),
    )
    saved = load_settings(conn, clinic_id)
    assert saved is not None
    return saved


def recent_deliveries(conn: Conn, limit: int = 50) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(
        """select delivery_id, channel, target, cardinality(flag_ids), state, attempts, created_at, sent_at,
                  last_error from app_alert_deliveries order by created_at desc limit %s""", (limit,))]  # fmt: skip


# ------------------------------------------------------------------------------ planning --------


def _payload(channel: str, delivery_id: str, clinic_id: str, flags: list[tuple[Any, ...]], a: AppSettings
             ) -> str:  # fmt: skip
    """What is sent: ids, kind, when and the reason in words, with a link into the app. The
    patient is named by the clinic's own id (MRN) only; the evidence stays in the app."""
    items = [{"flag_id": f[0], "patient_id": f[1], "patient": f[2] or f[1], "kind": f[3], "severity": "high",
              "raised_at": f[4].isoformat(), "reason": reason_in_words(f[3], f[5] or {}),
              "url": f"{a.public_url.rstrip('/')}/patients/{f[1]}"} for f in flags]  # fmt: skip
    if channel == "webhook":
        return json.dumps({"type": EVENT_TYPE, "timestamp": datetime.now(UTC).isoformat(),
                           "data": {"clinic_id": clinic_id, "delivery_id": delivery_id, "flags": items}},
                          separators=(",", ":"))  # fmt: skip
    lines = [f"{len(items)} new high-severity flag{'s' if len(items) != 1 else ''} in clinic {clinic_id}:", ""]
    for it in items:
        lines += [f"- {it['patient']}: {it['reason']} (raised {it['raised_at'][:16].replace('T', ' ')} UTC)",
                  f"  {it['url']}"]
    lines += ["", f"Review queue: {a.public_url.rstrip('/')}/queue"]
    return "\n".join(lines) + "\n"


def plan(conn: Conn, a: AppSettings) -> int:
    """Record a delivery per clinic and channel for the flags not yet in one. Returns how many."""
    made = 0
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (PLAN_LOCK,))
        clinics = conn.execute(
            "select clinic_id, webhook_url, email_to, after_flag_id from app_alert_settings").fetchall()
        for clinic_id, url, emails, after in clinics:
            for channel, target in (("webhook", url), ("email", ", ".join(emails or []))):
                if not target:
                    continue
                flags = conn.execute(
                    """select f.flag_id, f.patient_id, p.external_ref, f.kind, f.raised_at, f.evidence
                         from therapist_flags f join patients p using (patient_id)
                        where f.clinic_id = %s and f.severity = 'high' and f.state = 'open' and f.flag_id > %s
                          and not exists (select 1 from app_alert_flags x where x.flag_id = f.flag_id
                                             and x.channel = %s)
                        order by f.raised_at, f.flag_id""",
                    (clinic_id, after, channel),
                ).fetchall()
                if not flags:
                    continue
                delivery_id = f"msg_{uuid.uuid4().hex}"
                conn.execute(
                    """insert into app_alert_deliveries (delivery_id, clinic_id, channel, target, flag_ids, payload)
                       values (%s, %s, %s, %s, %s, %s)""",
                    (delivery_id, clinic_id, channel, target, [f[0] for f in flags],
                     _payload(channel, delivery_id, clinic_id, [tuple(f) for f in flags], a)),
                )  # fmt: skip
                conn.execute(
                    """insert into app_alert_flags (flag_id, channel, delivery_id)
                       select f, %s, %s from unnest(%s::bigint[]) f""",
                    (channel, delivery_id, [f[0] for f in flags]),
                )
                made += 1
    return made


# ------------------------------------------------------------------------------ sending ---------


class SendError(Exception):
    pass


def send_webhook(url: str, secret: str, delivery_id: str, body: str, timeout_s: float) -> None:
    raw = body.encode()
    ts = int(time.time())
    headers = {"content-type": "application/json", "webhook-id": delivery_id, "webhook-timestamp": str(ts),
               "webhook-signature": sign(secret, delivery_id, ts, raw), "user-agent": "rtm-alerts/1"}  # fmt: skip
    try:
        r = httpx.post(url, content=raw, headers=headers, timeout=timeout_s, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise SendError(f"{type(exc).__name__}: {exc}") from None
    if not 200 <= r.status_code < 300:  # Standard Webhooks: any 2xx is success, anything else a failure
        raise SendError(f"HTTP {r.status_code}: {r.text[:200]}")


def send_email(a: AppSettings, to: list[str], delivery_id: str, count: int, body: str) -> None:
    msg = EmailMessage()
    msg["From"] = a.smtp_from
    msg["To"] = ", ".join(to)
    msg["Subject"] = f"RTM: {count} new high-severity flag{'s' if count != 1 else ''}"
    msg["Message-ID"] = f"<{delivery_id}@{a.smtp_from.rpartition('@')[2] or 'rtm'}>"
    msg.set_content(body)
    try:
        with smtplib.SMTP(a.smtp_host, a.smtp_port, timeout=a.alert_timeout_s) as smtp:
            if a.smtp_starttls:
                smtp.starttls()
            if a.smtp_user:
                smtp.login(a.smtp_user, a.smtp_password or "")
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise SendError(f"{type(exc).__name__}: {exc}") from None


def backoff_s(attempts: int, a: AppSettings) -> float:
    """Seconds before attempt `attempts + 1`: doubling from the base, capped."""
    return float(min(a.alert_retry_base_s * 2 ** max(attempts - 1, 0), a.alert_retry_max_s))


@dataclass
class RoundStats:
    planned: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


Sender = Callable[[tuple[Any, ...], AppSettings], None]


def _send(row: tuple[Any, ...], a: AppSettings) -> None:
    delivery_id, channel, payload, n, url, secret, emails = row
    if channel == "webhook":
        if not url or not secret:
            raise SendError("the clinic removed its webhook")
        send_webhook(url, secret, delivery_id, payload, a.alert_timeout_s)
    else:
        if not emails:
            raise SendError("the clinic removed its e-mail recipients")
        send_email(a, list(emails), delivery_id, n, payload)


def send_due(conn: Conn, a: AppSettings, limit: int = 50, sender: Sender = _send) -> RoundStats:
    """Send each due delivery once: locked while it is sent, its outcome committed with the lock.
    The webhook URL and addresses are the clinic's current ones (a fixed typo reaches the retry).
    The back-off counts from the failure (clock_timestamp), not from the transaction's start."""
    stats = RoundStats()
    for _ in range(limit):
        with conn.transaction():
            row = conn.execute(
                """select d.delivery_id, d.channel, d.payload, cardinality(d.flag_ids), s.webhook_url,
                          s.webhook_secret, s.email_to, d.attempts
                     from app_alert_deliveries d left join app_alert_settings s using (clinic_id)
                    where d.state = 'pending' and d.next_attempt_at <= now()
                    order by d.next_attempt_at, d.created_at limit 1
                    for update of d skip locked"""
            ).fetchone()
            if row is None:
                break
            attempts = row[7] + 1
            try:
                sender(tuple(row[:7]), a)
            except SendError as exc:
                gave_up = attempts >= a.alert_max_attempts
                conn.execute(
                    """update app_alert_deliveries set attempts = %s, last_error = %s, state = %s,
                              next_attempt_at = clock_timestamp() + make_interval(secs => %s)
                        where delivery_id = %s""",
                    (attempts, str(exc)[:500], "failed" if gave_up else "pending", backoff_s(attempts, a), row[0]),
                )
                stats.failed += gave_up
                stats.retried += not gave_up
                stats.errors.append(f"{row[0]}: {exc}")
                log.warning("alert %s (%s) attempt %d failed: %s", row[0], row[1], attempts, exc)
                continue
            conn.execute(
                """update app_alert_deliveries set attempts = %s, state = 'sent', sent_at = now(), last_error = null
                    where delivery_id = %s""",
                (attempts, row[0]),
            )
            stats.sent += 1
    return stats


def run_round(conn: Conn, a: AppSettings) -> RoundStats:
    planned = plan(conn, a)
    stats = send_due(conn, a)
    stats.planned = planned
    return stats
