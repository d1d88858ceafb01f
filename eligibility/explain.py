"""Results as JSON: the answer billing gets, the explanation an auditor reads, and their hashes.

Serialization is canonical (sorted keys, decimals as strings, no timestamps), so the same stored
data always hashes the same and an unchanged answer is recognised without comparing documents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any

import orjson

from eligibility.model import CountedDay, Result

JSON = dict[str, Any]


_CENT = Decimal("0.01")


_DEC: dict[Decimal, str] = {}  # minutes and prices take few distinct values: format each once


def _dec(value: Decimal | None) -> str | None:
    # Equal decimals (15 and 15.00) quantize to the same text, so one entry serves both.
    if value is None:
        return None
    text = _DEC.get(value)
    if text is None:
        if len(_DEC) > 100_000:
            _DEC.clear()
        text = _DEC[value] = f"{value.quantize(_CENT):f}"
    return text


_ISO: dict[date, str] = {}  # a cohort spans a few hundred distinct dates: format each once


def iso(value: date) -> str:
    text = _ISO.get(value)
    if text is None:
        if len(_ISO) > 100_000:
            _ISO.clear()
        text = _ISO[value] = value.isoformat()
    return text


def _iso(value: date | None) -> str | None:
    return None if value is None else iso(value)


def _refs(value: object) -> object:
    # Raw JSON text from the database goes out untouched: no parse, no re-encode.
    return orjson.Fragment(value) if isinstance(value, str | bytes) else value


@lru_cache(maxsize=8192)
def _devices_json(devices: tuple[str, ...]) -> str:
    return orjson.dumps(list(devices)).decode()


def _day(d: CountedDay, memo: dict[int, bytes] | None = None) -> bytes:
    """A counted day as canonical JSON (sorted keys, no spaces). Records that are raw JSON text from
    the database are spliced in as they are, without building a dict per day. `memo` (by object,
    for one batch) serialises a day once: set-up and period 0 list the same days."""
    if memo is not None and (done := memo.get(id(d))) is not None:
        return done
    refs = d.refs
    if len(refs) == 1 and type(refs[0]) is str and len(d.devices) == 1:  # the usual day: one device
        out = f'{{"date":"{iso(d.local_date)}","devices":{_devices_json(d.devices)},"records":[{refs[0]}]}}'.encode()
    elif all(isinstance(x, str) for x in refs):
        records = ",".join(d.refs)  # type: ignore[arg-type]
        out = f'{{"date":"{iso(d.local_date)}","devices":{_devices_json(d.devices)},"records":[{records}]}}'.encode()
    else:
        doc = {"date": _iso(d.local_date), "devices": list(d.devices), "records": [_refs(x) for x in d.refs]}
        out = dumps(doc)
    if memo is not None:
        memo[id(d)] = out
    return out


def _days_json(days: Sequence[CountedDay], memo: dict[int, bytes] | None) -> bytes:
    # Most days come with their JSON written by the engine; the others are written here, once.
    return b"[" + b",".join([d.json or _day(d, memo) for d in days]) + b"]"


# Dates go to orjson as they are: it writes a date as its ISO form ("2026-03-05"), the same text
# as date.isoformat(), without a Python call per date.


def answer_of(r: Result) -> JSON:
    return {
        "codes": [
            {
                "code": ln.code,
                "units": ln.units,
                "modifiers": list(ln.modifiers),
                "unit_price": _dec(ln.unit_price),
                "service_date": ln.service_date,
            }
            for ln in r.lines
        ],
        "service_date": r.service_date,
    }


def explanation_of(r: Result, memo: dict[int, bytes] | None = None) -> JSON:
    out: JSON = {
        "kind": r.kind,
        "policy": {"id": r.policy_id, "version": r.policy_version},
        "period": {
            "index": r.period_index,
            "start": r.period_start,
            "end": r.period_end,
            "cut_by_discharge": r.cut_by_discharge,
        },
        "billing_practitioner": r.billing_practitioner_id,
        "reason": r.reason,
        "reached_on": r.reached_on,
        "gates": [{"name": g.name, "passed": g.passed, "detail": g.detail} for g in r.gates],
        "lines": [
            {
                "code": ln.code,
                "earned_on": ln.earned_on,
                "service_date": ln.service_date,
                "why": ln.why_dated,
            }
            for ln in r.lines
        ],
    }
    if r.anchor is not None:
        out["anchor"] = {"rule": r.anchor.rule, "date": r.anchor.date, "detail": r.anchor.detail}
    if r.data_days is not None:
        out["data_days"] = r.data_days
        out["days"] = orjson.Fragment(_days_json(r.days, memo))
        out["excluded_days"] = [
            {"date": x.local_date, "device": x.device_id, "why": x.why} for x in r.excluded_days
        ]
    if r.minutes is not None:
        out["minutes"] = _dec(r.minutes)
        out["assistant_minutes"] = _dec(r.assistant_minutes)
        out["interactive"] = r.interactive
        out["entries"] = [
            {
                "entry": e.entry_id,
                "date": e.local_date,
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
        + (f" dated {c['service_date']}" if c.get("service_date") else "")
        for c in codes
    )


def _days_set(expl: JSON) -> set[str]:
    return {d["date"] for d in expl.get("days", [])}


def _entries(expl: JSON) -> dict[str, JSON]:
    return {e["entry"]: e for e in expl.get("entries", [])}


def _excluded(expl: JSON, key: str, field: str) -> dict[str, str]:
    return {x[field]: x["why"] for x in expl.get(key, [])}


def _list(items: list[str]) -> str:
    return ", ".join(items)


def _data_change(old: JSON, new: JSON) -> list[str]:
    added = sorted(_days_set(new) - _days_set(old))
    removed = sorted(_days_set(old) - _days_set(new))
    why_out = _excluded(new, "excluded_days", "date")
    why_before = _excluded(old, "excluded_days", "date")
    parts = []
    late = [day for day in added if day not in why_before]
    if late:
        parts.append(f"data for {_list(late)} arrived after the release and now counts")
    for day in added:
        if day in why_before:  # the data were there; what excluded them changed
            parts.append(f"{day} now counts (was excluded: {why_before[day]})")
    for day in removed:
        parts.append(f"{day} no longer counts ({why_out.get(day, 'its data is gone')})")
    counts = f"data days {old.get('data_days')} -> {new.get('data_days')}"
    if parts:
        return [f"{'; '.join(parts)}: {counts}"]
    if old.get("data_days") != new.get("data_days"):
        return [counts]
    if old.get("days") != new.get("days"):
        return ["the records behind the counted days changed (same days)"]
    return []


def _entry_change(old: JSON, new: JSON) -> list[str]:
    oe, ne = _entries(old), _entries(new)
    why_out = _excluded(new, "excluded_entries", "entry")
    parts = []
    for eid in sorted(set(ne) - set(oe)):
        e = ne[eid]
        parts.append(f"entry {eid} ({e['minutes']} minutes on {e['date']}, {e['channel']}) now counts")
    for eid in sorted(set(oe) - set(ne)):
        parts.append(f"entry {eid} ({oe[eid]['minutes']} minutes) no longer counts ({why_out.get(eid, 'removed')})")
    for eid in sorted(set(oe) & set(ne)):
        if oe[eid]["minutes"] != ne[eid]["minutes"]:
            parts.append(f"entry {eid} now counts {ne[eid]['minutes']} minutes instead of {oe[eid]['minutes']}")
    if not parts and old.get("minutes") == new.get("minutes"):
        return []
    return [f"{'; '.join(parts)}{': ' if parts else ''}minutes {old.get('minutes')} -> {new.get('minutes')}"]


def change_reason(old_answer: JSON, new_answer: JSON, old: JSON, new: JSON) -> str:
    """Why a released result changed, in words an auditor can check against the data: what changed
    in the inputs first, then what that does to the claim."""
    parts: list[str] = []
    if old.get("policy") != new.get("policy"):
        o, n = old.get("policy") or {}, new.get("policy") or {}
        parts.append(f"policy {o.get('id')}@{o.get('version')} -> {n.get('id')}@{n.get('version')}")
    oa, na = old.get("anchor") or {}, new.get("anchor") or {}
    if oa.get("date") != na.get("date"):
        parts.append(f"device periods now start on {na.get('date')} instead of {oa.get('date')} ({na.get('detail')})")
    parts += _data_change(old, new)
    parts += _entry_change(old, new)
    if old.get("interactive") != new.get("interactive"):
        parts.append(
            "an interactive contact now counts in the month"
            if new.get("interactive")
            else "no interactive contact counts in the month any more"
        )
    og = {g["name"]: g for g in old.get("gates", [])}
    ng = {g["name"]: g for g in new.get("gates", [])}
    for name in sorted(set(og) | set(ng)):
        was, now = og.get(name, {}).get("passed"), ng.get(name, {}).get("passed")
        if was != now:
            state = {True: "passes", False: "fails", None: "is no longer checked"}[now]
            detail = ng[name]["detail"] if name in ng else og[name]["detail"]
            parts.append(f"gate {name} now {state} ({detail})")
    if old_answer != new_answer:
        parts.append(f"so the claim changes from {_codes_text(old_answer)} to {_codes_text(new_answer)}")
    elif parts:
        parts.append(f"the claim stays {_codes_text(new_answer)}")
    return "; ".join(parts) or "explanation wording changed (same claim, same data)"
