"""Claim-ready exports of a clinic's month: CSV (RFC 4180) and a FHIR R4 Bundle.

One CSV row per line item: date of service, CPT code, units, modifiers 1-4, ICD-10 pointers
(A-D into the episode's diagnosis codes, as on a CMS-1500), rendering and billing NPI, the
patient's external id. The FHIR Bundle holds the ChargeItems of the eligibility engine's export
together with the Patient, Practitioner and EpisodeOfCare they reference, so that every reference
resolves inside the bundle; it is validated with fhir.resources before it leaves."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
import psycopg

from eligibility import billing

Conn = psycopg.Connection[Any]
CSV_HEADER = ("patient_external_id", "date_of_service", "cpt", "units", "modifier_1", "modifier_2", "modifier_3",
              "modifier_4", "icd10_pointers", "icd10_codes", "rendering_npi", "billing_npi", "status", "patient_id",
              "episode_id", "result_key")  # fmt: skip
_POINTERS = "ABCD"  # a claim line points to at most four of the claim's diagnoses


@dataclass(frozen=True)
class ClaimLine:
    patient_external_id: str
    date_of_service: date | None
    cpt: str
    units: int
    modifiers: tuple[str, ...]
    diagnosis_codes: tuple[str, ...]
    rendering_npi: str | None
    billing_npi: str | None
    status: str
    patient_id: str
    episode_id: str
    result_key: str


def claim_lines(conn: Conn, clinic_id: str, month: date) -> list[ClaimLine]:
    items = billing.summaries(conn, clinic_id=clinic_id, month=month, billable_only=True)
    episodes = {r[0]: r[1:] for r in conn.execute(
        """select e.episode_id, p.external_ref, e.diagnosis_codes, s.npi
             from episodes e join patients p using (patient_id)
             left join app_staff s on s.staff_id = e.billing_practitioner_id
            where e.clinic_id = %s""", (clinic_id,))}  # fmt: skip
    out = []
    for item in items:
        ext, dx, npi = episodes.get(item.episode_id, (None, [], None))
        for c in item.codes:
            out.append(ClaimLine(ext or item.patient_id, c.service_date or item.service_date, c.code, c.units,
                                 tuple(c.modifiers[:4]), tuple(dx or ()), npi, npi, item.status, item.patient_id,
                                 item.episode_id, item.result_key))  # fmt: skip
    return out


def to_csv(lines: list[ClaimLine]) -> str:
    """RFC 4180: CRLF line ends, a header row, fields quoted when they hold a comma, quote or line end."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(CSV_HEADER)
    for ln in lines:
        mods = list(ln.modifiers) + [""] * (4 - len(ln.modifiers))
        w.writerow([ln.patient_external_id, ln.date_of_service.isoformat() if ln.date_of_service else "", ln.cpt,
                    ln.units, *mods, _POINTERS[: min(len(ln.diagnosis_codes), 4)],
                    " ".join(ln.diagnosis_codes[:4]), ln.rendering_npi or "", ln.billing_npi or "", ln.status,
                    ln.patient_id, ln.episode_id, ln.result_key])  # fmt: skip
    return buf.getvalue()


def _urn(kind: str, ident: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'rtm:{kind}/{ident}')}"


def fhir_bundle(conn: Conn, clinic_id: str, month: date) -> str:
    """A FHIR R4 collection Bundle, validated; references point at entries of the bundle itself."""
    from fhir.resources.R4B.bundle import Bundle  # R4B: R4's resource model, as fhir.resources ships it

    items = billing.summaries(conn, clinic_id=clinic_id, month=month, billable_only=True)
    doc = billing.to_fhir_bundle(items)
    patients = {s.patient_id for s in items}
    episodes = {s.episode_id for s in items}
    practitioners = {s.billing_practitioner_id for s in items if s.billing_practitioner_id}
    extra: list[dict[str, Any]] = []
    for pid, ext in conn.execute("select patient_id, external_ref from patients where patient_id = any(%s)",
                                 (sorted(patients),)):
        res: dict[str, Any] = {"resourceType": "Patient", "id": pid}
        if ext:
            res["identifier"] = [{"system": f"urn:rtm:clinic:{clinic_id}:mrn", "value": ext}]
        extra.append({"fullUrl": _urn("Patient", pid), "resource": res})
    for prid, name, npi in conn.execute(
        """select p.practitioner_id, p.display_name, s.npi from practitioners p
             left join app_staff s on s.staff_id = p.practitioner_id where p.practitioner_id = any(%s)""",
        (sorted(practitioners),),
    ):
        res = {"resourceType": "Practitioner", "id": prid, "name": [{"text": name}]}
        if npi:
            res["identifier"] = [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}]
        extra.append({"fullUrl": _urn("Practitioner", prid), "resource": res})
    for eid, pid, start, end in conn.execute(
        "select episode_id, patient_id, start_date, discharge_date from episodes where episode_id = any(%s)",
        (sorted(episodes),),
    ):
        period = {"start": start.isoformat(), **({"end": end.isoformat()} if end else {})}
        extra.append({"fullUrl": _urn("EpisodeOfCare", eid), "resource": {
            "resourceType": "EpisodeOfCare", "id": eid, "status": "finished" if end else "active",
            "patient": {"reference": _urn("Patient", pid)}, "period": period}})  # fmt: skip
    for entry in doc["entry"]:
        r = entry["resource"]
        r["subject"]["reference"] = _urn("Patient", r["subject"]["reference"].split("/", 1)[1])
        r["context"]["reference"] = _urn("EpisodeOfCare", r["context"]["reference"].split("/", 1)[1])
        for perf in r.get("performer", []):
            perf["actor"]["reference"] = _urn("Practitioner", perf["actor"]["reference"].split("/", 1)[1])
    doc["entry"] = extra + doc["entry"]
    Bundle.model_validate(doc)  # raises on anything FHIR R4 does not allow
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"
