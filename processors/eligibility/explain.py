"""Results as JSON: the answer billing gets, the explanation an auditor reads, and their hashes.

Serialization is canonical (sorted keys, decimals as strings, no timestamps), so the same stored
data always hashes the same and an unchanged answer is recognised without comparing documents.
"""

from __future__ import annotations

import hashlib
from datetime import date
from decimal import Decimal
from typing import Any

import orjson

from processors.eligibility.model import Result

JSON = dict[str, Any]


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else f"{value.quantize(Decimal('0.01')):f}"


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _refs(value: object) -> object:
    # Raw JSON text from the database goes out untouched: no parse, no re-encode.
    return orjson.Fragment(value) if isinstance(value, str | bytes) else value


def answer_of(r: Result) -> JSON:
    return {
        "codes": [
            {
                "code": ln.code,
                "units": ln.units,
                "modifiers": list(ln.modifiers),
                "unit_price": _dec(ln.unit_price),
            }
            for ln in r.lines
        ],
        "service_date": _iso(r.service_date),
    }


def explanation_of(r: Result) -> JSON:
    out: JSON = {
        "kind": r.kind,
        "policy": {"id": r.policy_id, "version": r.policy_version},
        "period": {
            "index": r.period_index,
            "start": _iso(r.period_start),
            "end": _iso(r.period_end),
            "cut_by_discharge": r.cut_by_discharge,
        },
        "billing_practitioner": r.billing_practitioner_id,
        "reason": r.reason,
        "reached_on": _iso(r.reached_on),
        "gates": [{"name": g.name, "passed": g.passed, "detail": g.detail} for g in r.gates],
    }
    if r.data_days is not None:
        out["data_days"] = r.data_days
        out["days"] = [
            {"date": _iso(d.local_date), "devices": list(d.devices), "records": [_refs(x) for x in d.refs]}
            for d in r.days
        ]
        out["excluded_days"] = [
            {"date": _iso(x.local_date), "device": x.device_id, "why": x.why} for x in r.excluded_days
        ]
    if r.minutes is not None:
        out["minutes"] = _dec(r.minutes)
        out["assistant_minutes"] = _dec(r.assistant_minutes)
        out["interactive"] = r.interactive
        out["entries"] = [
            {
                "entry": e.entry_id,
                "date": _iso(e.local_date),
                "practitioner": e.practitioner_id,
                "role": e.practitioner_role,
                "activity": e.activity,
                "channel": e.channel,
                "minutes": _dec(e.minutes),
                "interactive": e.interactive,
            }
            for e in r.entries
        ]
        out["excluded_entries"] = [{"entry": x.entry_id, "why": x.why} for x in r.excluded_entries]
    return out


def dumps(doc: object) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:32]


def bill_month(r: Result) -> date:
    """The month a result is billed in: that of its date of service, else of its period's end."""
    return (r.service_date or r.period_end).replace(day=1)


# ------------------------------------------------------------------------------ amendments ------


def _codes_text(answer: JSON) -> str:
    codes = answer.get("codes") or []
    if not codes:
        return "no code"
    return " + ".join(
        f"{c['code']}"
        + (f" x{c['units']}" if c["units"] != 1 else "")
        + "".join(f"-{m}" for m in c["modifiers"])
        for c in codes
    )


def _days_set(expl: JSON) -> set[str]:
    return {d["date"] for d in expl.get("days", [])}


def _entries_set(expl: JSON) -> dict[str, str]:
    return {e["entry"]: e["minutes"] for e in expl.get("entries", [])}


def change_reason(old_answer: JSON, new_answer: JSON, old: JSON, new: JSON) -> str:
    """Why a released result changed, in words an auditor can check against the data."""
    parts: list[str] = []
    if old_answer != new_answer:
        parts.append(f"claim {_codes_text(old_answer)} -> {_codes_text(new_answer)}")
        if old_answer.get("service_date") != new_answer.get("service_date"):
            parts.append(
                f"date of service {old_answer.get('service_date')} -> {new_answer.get('service_date')}"
            )
    if old.get("policy") != new.get("policy"):
        o, n = old.get("policy") or {}, new.get("policy") or {}
        parts.append(f"policy {o.get('id')}@{o.get('version')} -> {n.get('id')}@{n.get('version')}")
    if old.get("data_days") != new.get("data_days") or _days_set(old) != _days_set(new):
        added = sorted(_days_set(new) - _days_set(old))
        removed = sorted(_days_set(old) - _days_set(new))
        text = f"data days {old.get('data_days')} -> {new.get('data_days')}"
        text += f" (late data for {', '.join(added)})" if added else ""
        text += f" (no longer counted: {', '.join(removed)})" if removed else ""
        parts.append(text)
    elif old.get("days") != new.get("days"):
        parts.append("records behind the counted days changed")
    oe, ne = _entries_set(old), _entries_set(new)
    if old.get("minutes") != new.get("minutes") or oe != ne:
        text = f"minutes {old.get('minutes')} -> {new.get('minutes')}"
        added_e = sorted(set(ne) - set(oe))
        removed_e = sorted(set(oe) - set(ne))
        text += f" (entries added: {', '.join(added_e)})" if added_e else ""
        text += f" (entries no longer counted: {', '.join(removed_e)})" if removed_e else ""
        parts.append(text)
    if old.get("interactive") != new.get("interactive"):
        parts.append(f"interactive contact {old.get('interactive')} -> {new.get('interactive')}")
    og = {g["name"]: g["passed"] for g in old.get("gates", [])}
    ng = {g["name"]: g["passed"] for g in new.get("gates", [])}
    for name in sorted(set(og) | set(ng)):
        if og.get(name) != ng.get(name):
            state = {True: "passed", False: "failed", None: "absent"}
            parts.append(f"gate {name} {state[og.get(name)]} -> {state[ng.get(name)]}")
    return "; ".join(parts) or "explanation wording changed"
