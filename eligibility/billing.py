"""Billing summaries, exports (CSV, JSON Lines, FHIR R4 ChargeItem bundle) and release.

Everything here reads eligibility_results (and releases/amendments), so it runs as the reader
role, except `release`, which hands results to billing and needs the writer.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict

from rtm.db import Conn

Format = Literal["csv", "jsonl", "fhir"]

CPT_SYSTEM = "http://www.ama-assn.org/go/cpt"
MODIFIER_EXTENSION = "https://rtm-pipeline.org/fhir/StructureDefinition/billing-modifier"
RESULT_ID_SYSTEM = "https://rtm-pipeline.org/fhir/eligibility-result"
RELEASABLE = "(status in ('final', 'amended') or (status = 'provisional' and early_release))"


class CodeOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    units: int
    modifiers: list[str]
    unit_price: Decimal
    # Each line's own date of service (a result's lines may be earned on different days).
    service_date: date | None = None


class Summary(BaseModel):
    """One answer as billing sees it."""

    model_config = ConfigDict(frozen=True)

    result_key: str
    kind: str
    clinic_id: str
    patient_id: str
    episode_id: str
    billing_practitioner_id: str | None
    period_start: date
    period_end: date
    bill_month: date
    codes: list[CodeOut]
    service_date: date | None
    status: str
    policy: str
    data_days: int | None
    minutes: Decimal | None
    reason: str
    gates_failed: list[str]
    release_id: str | None
    revision: int
    explanation: dict[str, Any] | None = None


_SUMMARY_SQL = """
select result_key, kind, clinic_id, patient_id, episode_id, billing_practitioner_id, period_start,
       period_end, bill_month, answer, service_date, status, policy_id || '@' || policy_version, data_days,
       minutes, reason, {explanation}, release_id, revision, gates_failed
  from eligibility_results"""


def _select(with_explanation: bool) -> str:
    """The summary query; the explanation documents only when asked for (lists need the failed
    gates alone, stored in their own column)."""
    return _SUMMARY_SQL.format(explanation="explanation" if with_explanation else "null::json")


def _summary(row: tuple[Any, ...], with_explanation: bool) -> Summary:
    (key, kind, clinic, patient, episode, who, start, end, month, answer, service, status, policy, days,
     minutes, reason, explanation, release_id, revision, failed) = row  # fmt: skip
    return Summary(
        result_key=key, kind=kind, clinic_id=clinic, patient_id=patient, episode_id=episode,
        billing_practitioner_id=who, period_start=start, period_end=end, bill_month=month,
        codes=[CodeOut.model_validate(c) for c in answer["codes"]], service_date=service, status=status,
        policy=policy, data_days=days, minutes=minutes, reason=reason, gates_failed=failed,
        release_id=release_id, revision=revision, explanation=explanation if with_explanation else None,
    )  # fmt: skip


def summaries(
    conn: Conn,
    clinic_id: str | None = None,
    month: date | None = None,
    patient_id: str | None = None,
    billable_only: bool = False,
    with_explanation: bool = False,
) -> list[Summary]:
    """Answers per patient per period/month, filtered by clinic, bill month and patient."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("clinic_id", clinic_id), ("patient_id", patient_id)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if month is not None:
        where.append("bill_month = %s")
        params.append(month.replace(day=1))
    if billable_only:
        where.append("cardinality(codes) > 0")
    sql = (
        _select(with_explanation) + (" where " + " and ".join(where) if where else "")
        + " order by patient_id, result_key"
    )
    return [_summary(r, with_explanation) for r in conn.execute(sql, params)]


def amendments(
    conn: Conn, clinic_id: str | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    sql = """select amendment_id, result_key, patient_id, clinic_id, release_id, old_answer, new_answer,
                    changes_claim, reason, created_at, released_in
               from eligibility_amendments where (%s::text is null or clinic_id = %s)
                and (%s::timestamptz is null or created_at >= %s) order by amendment_id"""
    keys = ("amendment_id", "result_key", "patient_id", "clinic_id", "release_id", "old_answer", "new_answer",
            "changes_claim", "reason", "created_at", "released_in")  # fmt: skip
    rows = conn.execute(sql, (clinic_id, clinic_id, since, since)).fetchall()
    return [dict(zip(keys, r, strict=True)) for r in rows]


# ------------------------------------------------------------------------------ exports ---------

CSV_COLUMNS = (
    "clinic_id", "patient_id", "episode_id", "billing_practitioner_id", "kind", "period_start", "period_end",
    "code", "units", "modifiers", "unit_price", "service_date", "status", "policy", "data_days", "minutes",
    "reason", "result_key", "revision",
)  # fmt: skip


def _lines(items: Sequence[Summary]) -> list[dict[str, Any]]:
    """One line per billed code (results without a code keep one line with an empty code)."""
    out = []
    for s in items:
        base = {
            "clinic_id": s.clinic_id, "patient_id": s.patient_id, "episode_id": s.episode_id,
            "billing_practitioner_id": s.billing_practitioner_id, "kind": s.kind,
            "period_start": s.period_start.isoformat(), "period_end": s.period_end.isoformat(),
            "service_date": s.service_date.isoformat() if s.service_date else None, "status": s.status,
            "policy": s.policy, "data_days": s.data_days,
            "minutes": f"{s.minutes:f}" if s.minutes is not None else None, "reason": s.reason,
            "result_key": s.result_key, "revision": s.revision,
        }  # fmt: skip
        codes: list[CodeOut | None] = list(s.codes) or [None]
        for c in codes:
            line = dict(base)
            line["code"] = c.code if c else None
            line["units"] = c.units if c else 0
            line["modifiers"] = ",".join(c.modifiers) if c else ""
            line["unit_price"] = f"{c.unit_price:f}" if c else None
            if c and c.service_date:
                line["service_date"] = c.service_date.isoformat()
            out.append(line)
    return out


def to_csv(items: Sequence[Summary]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for line in _lines(items):
        writer.writerow({k: ("" if line[k] is None else line[k]) for k in CSV_COLUMNS})
    return buf.getvalue()


def to_jsonl(items: Sequence[Summary]) -> str:
    return "".join(orjson.dumps(s.model_dump(mode="json")).decode() + "\n" for s in items)


def _charge_status(status: str) -> str:
    # ChargeItem.status: planned | billable | not-billable | aborted | billed | entered-in-error | unknown
    return {"provisional": "planned", "final": "billable", "released": "billed", "amended": "billable"}[
        status
    ]


def to_fhir_bundle(items: Sequence[Summary], policy_note: bool = True) -> dict[str, Any]:
    """A FHIR R4 Bundle (type collection) of ChargeItem resources, one per billed code line.

    R4 ChargeItem has no modifier element, so CPT/HCPCS modifiers travel in an extension."""
    entries = []
    for s in items:
        for c in s.codes:
            rid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{s.result_key}#{c.code}#{s.revision}"))
            resource: dict[str, Any] = {
                "resourceType": "ChargeItem",
                "id": rid,
                "identifier": [{"system": RESULT_ID_SYSTEM, "value": f"{s.result_key}#{c.code}"}],
                "status": _charge_status(s.status),
                "code": {"coding": [{"system": CPT_SYSTEM, "code": c.code}]},
                "subject": {"reference": f"Patient/{s.patient_id}"},
                "context": {"reference": f"EpisodeOfCare/{s.episode_id}"},
                "quantity": {"value": c.units},
                "priceOverride": {"value": float(c.unit_price), "currency": "USD"},
                "extension": [{"url": MODIFIER_EXTENSION, "valueCode": m} for m in c.modifiers],
            }
            dated = c.service_date or s.service_date
            if dated:
                resource["occurrenceDateTime"] = dated.isoformat()
            else:
                resource["occurrencePeriod"] = {
                    "start": s.period_start.isoformat(),
                    "end": s.period_end.isoformat(),
                }
            if s.billing_practitioner_id:
                resource["performer"] = [
                    {"actor": {"reference": f"Practitioner/{s.billing_practitioner_id}"}}
                ]
            if policy_note:
                resource["note"] = [{"text": f"{s.policy}: {s.reason}"}]
            if not resource["extension"]:
                del resource["extension"]
            entries.append({"fullUrl": f"urn:uuid:{rid}", "resource": resource})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def export(conn: Conn, fmt: Format, clinic_id: str, month: date, billable_only: bool = True) -> str:
    items = summaries(conn, clinic_id=clinic_id, month=month, billable_only=billable_only)
    if fmt == "csv":
        return to_csv(items)
    if fmt == "jsonl":
        return to_jsonl(items)
    return orjson.dumps(to_fhir_bundle(items), option=orjson.OPT_INDENT_2).decode() + "\n"


# ------------------------------------------------------------------------------ release ---------


class ReleaseReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    release_id: str | None
    dry_run: bool
    clinic_id: str
    month: date
    released: list[Summary]
    held: list[Summary]  # still provisional: not handed to billing yet


def release(
    conn: Conn, clinic_id: str, month: date, dry_run: bool = False, actor: str | None = None
) -> ReleaseReport:
    """Hand the clinic's final (and early-releasable) answers for a bill month to billing.

    Released answers are frozen in eligibility_releases; a later change becomes an amendment."""
    month = month.replace(day=1)
    with conn.transaction():
        rows = conn.execute(
            _select(True) + f" where clinic_id = %s and bill_month = %s and {RELEASABLE}"
            " order by patient_id, result_key for update",
            (clinic_id, month),
        ).fetchall()
        ready = [_summary(r, True) for r in rows]
        held = summaries(conn, clinic_id=clinic_id, month=month)
        held = [
            h for h in held if h.status == "provisional" and h.result_key not in {r.result_key for r in ready}
        ]
        if dry_run or not ready:
            return ReleaseReport(
                release_id=None, dry_run=dry_run, clinic_id=clinic_id, month=month, released=ready, held=held
            )
        release_id = f"rel-{month:%Y%m}-{uuid.uuid4().hex[:12]}"
        keys = [r.result_key for r in ready]
        conn.execute(
            """insert into eligibility_releases (release_id, result_key, revision, clinic_id, bill_month,
                   answer, explanation, released_by)
               select %s, result_key, revision, clinic_id, bill_month, answer, explanation, %s
                 from eligibility_results where result_key = any(%s)""",
            (release_id, actor, keys),
        )
        conn.execute(
            """update eligibility_results set status = 'released', release_id = %s, released_at = now()
                where result_key = any(%s)""",
            (release_id, keys),
        )
        conn.execute(
            """update eligibility_amendments set released_in = %s
                where result_key = any(%s) and released_in is null""",
            (release_id, keys),
        )
    released = [r.model_copy(update={"status": "released", "release_id": release_id}) for r in ready]
    return ReleaseReport(
        release_id=release_id, dry_run=False, clinic_id=clinic_id, month=month, released=released, held=held
    )
