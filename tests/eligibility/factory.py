"""Build casebook scenarios in the real database the way the pipeline would, run the engine, read
the answers back. Every scenario gets its own clinic, patient and ids, so tests share one database."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from eligibility.policy import Policy, available_policies, load_policy
from eligibility.store import RecomputeStats, recompute_patients
from eligibility.timeentries import NewTimeEntry, add_entry
from rtm.contract.clinical import TimeActivity, TimeChannel
from rtm.db import Conn
from rtm.localtime import TzHistory


def d(text: str) -> date:
    return date.fromisoformat(text)


def days_from(start: str, n: int, step: int = 1) -> list[date]:
    first = d(start)
    return [first + timedelta(days=i * step) for i in range(n)]


def variant(base: Policy, new_id: str, **sections: dict[str, Any]) -> Policy:
    """A copy of a policy with some settings changed, e.g. interactive={"secure_message_counts": True}."""
    update: dict[str, Any] = {"id": new_id}
    for name, changes in sections.items():
        update[name] = getattr(base, name).model_copy(update=changes)
    return base.model_copy(update=update)


@dataclass(frozen=True)
class Row:
    key: str
    codes: list[str]
    answer: dict[str, Any]
    status: str
    reason: str
    explanation: dict[str, Any]
    data_days: int | None
    minutes: Decimal | None
    service_date: date | None
    period_start: date
    period_end: date

    @property
    def lines(self) -> list[tuple[str, int, tuple[str, ...]]]:
        return [(c["code"], c["units"], tuple(c["modifiers"])) for c in self.answer["codes"]]

    def gate(self, name: str) -> dict[str, Any]:
        return next(g for g in self.explanation["gates"] if g["name"] == name)

    @property
    def day_list(self) -> list[str]:
        return [x["date"] for x in self.explanation.get("days", [])]


class Scenario:
    """One clinic, one patient, one PT episode from 2026-03-01 with a qualifying device, consent,
    set-up and plan of care on day one, in America/New_York, under medicare-2026 — unless told otherwise."""

    def __init__(
        self,
        conn: Conn,
        *,
        tz: str = "America/New_York",
        start: str = "2026-03-01",
        policy: str = "medicare-2026",
        category: str = "musculoskeletal",
        discipline: str = "PT",
        consent: str | None = "2026-03-01T09:00",
        plan_of_care: tuple[str, str | None] | None = ("2026-03-01", None),
        setup_documented: bool = True,
        discharge: str | None = None,
        qualifying_model: bool = True,
        billing: bool = True,
    ) -> None:
        self.conn = conn
        self.tag = uuid.uuid4().hex[:10]
        self.tz = tz
        self.clinic = f"clinic-{self.tag}"
        self.patient = f"patient-{self.tag}"
        self.therapist = f"pt-{self.tag}"
        self.assistant = f"pta-{self.tag}"
        self.ot_assistant = f"ota-{self.tag}"
        self.physician = f"md-{self.tag}"
        self.other_therapist = f"pt2-{self.tag}"
        self._n = 0
        self._zones: list[tuple[datetime, str]] = []
        ex = conn.execute
        ex("insert into clinics (clinic_id, name) values (%s, 'Casebook clinic')", (self.clinic,))
        for pid, role, disc in (
            (self.therapist, "therapist", discipline),
            (self.assistant, "assistant", discipline),
            (self.ot_assistant, "assistant", "OT"),
            (self.physician, "physician", None),
            (self.other_therapist, "therapist", discipline),
        ):
            ex(
                "insert into practitioners (practitioner_id, clinic_id, role, discipline, display_name) "
                "values (%s, %s, %s, %s, %s)",
                (pid, self.clinic, role, disc, pid),
            )
        ex("insert into patients (patient_id, clinic_id) values (%s, %s)", (self.patient, self.clinic))
        self.move_to(tz, "2025-01-01T00:00+00:00")
        self.models = {True: f"model-q-{self.tag}", False: f"model-n-{self.tag}"}
        for flag, model in self.models.items():
            ex(
                "insert into device_models (model_id, vendor, name, qualifying_medical_device) "
                "values (%s, 'acme', 'sensor', %s)",
                (model, flag),
            )
        self.episode = self.add_episode(
            start=start, policy=policy, category=category, discipline=discipline, consent=consent,
            plan_of_care=plan_of_care, setup_documented=setup_documented, discharge=discharge,
            billing=billing,
        )  # fmt: skip
        self.device = self.add_device(qualifying_model)
        self.assign(self.device, self.episode, start)

    # ----------------------------------------------------------------------- care context -------
    def local(self, day: date | str, hour: int = 10, minute: int = 0, tz: str | None = None) -> datetime:
        day = d(day) if isinstance(day, str) else day
        return datetime.combine(day, time(hour, minute), ZoneInfo(tz or self.tz))

    def move_to(self, tz: str, effective_from: str | datetime) -> None:
        at = datetime.fromisoformat(effective_from) if isinstance(effective_from, str) else effective_from
        self._zones.append((at, tz))
        self.conn.execute(
            "insert into patient_timezones (patient_id, effective_from, tz) values (%s, %s, %s)",
            (self.patient, at, tz),
        )

    def add_episode(
        self,
        *,
        start: str,
        policy: str = "medicare-2026",
        category: str = "musculoskeletal",
        discipline: str = "PT",
        consent: str | None = None,
        plan_of_care: tuple[str, str | None] | None = None,
        setup_documented: bool = True,
        discharge: str | None = None,
        billing: bool = True,
        billing_practitioner: str | None = None,
    ) -> str:
        self._n += 1
        episode = f"ep{self._n}-{self.tag}"
        consent_at = self.local(consent[:10], int(consent[11:13])) if consent else None
        poc = plan_of_care or (None, None)
        who = billing_practitioner or (self.therapist if billing else None)
        self.conn.execute(
            """insert into episodes (episode_id, patient_id, clinic_id, payer_policy, monitoring_category,
                   discipline, billing_practitioner_id, start_date, setup_date, setup_documented_at,
                   consent_at, plan_of_care_start, plan_of_care_end, discharge_date)
               values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                episode, self.patient, self.clinic, policy, category, discipline, who, d(start), d(start),
                self.local(start, 9) if setup_documented else None, consent_at, poc[0], poc[1], discharge,
            ),
        )  # fmt: skip
        return episode

    def update_episode(self, episode: str | None = None, **values: Any) -> None:
        sets = ", ".join(f"{k} = %s" for k in values)
        self.conn.execute(
            f"update episodes set {sets} where episode_id = %s", (*values.values(), episode or self.episode)
        )

    def add_device(self, qualifying: bool = True) -> str:
        self._n += 1
        device = f"dev{self._n}-{self.tag}"
        self.conn.execute(
            "insert into devices (device_id, model_id) values (%s, %s)", (device, self.models[qualifying])
        )
        return device

    def assign(self, device: str, episode: str, start: str, end: str | None = None) -> None:
        self.conn.execute(
            """insert into device_assignments (device_id, episode_id, patient_id, valid_from, valid_to)
               values (%s, %s, %s, %s, %s)""",
            (device, episode, self.patient, self.local(start, 0), self.local(end, 0) if end else None),
        )

    def end_assignment(self, device: str, day: str) -> None:
        self.conn.execute(
            "update device_assignments set valid_to = %s where device_id = %s", (self.local(day, 0), device)
        )

    # ----------------------------------------------------------------------- data ---------------
    def days(self, dates: Iterable[date | str], device: str | None = None, qualifying: bool = True) -> None:
        """Data-day facts for patient-local dates, as the day-facts processor writes them."""
        dev = device or self.device
        rows = []
        for day in dates:
            local_date = d(day) if isinstance(day, str) else day
            refs = orjson.dumps([{"kind": "exercise_set", "id": f"set-{dev}-{local_date}"}]).decode()
            rows.append((local_date, self.patient, dev, self.tz, 30, 2, 500, qualifying, refs))
        self._write_facts(rows)

    def samples(self, instants: Iterable[datetime], device: str | None = None) -> list[date]:
        """Qualifying samples at UTC instants: each goes to the patient-local date in force at that
        instant (time-zone history, DST included), as the processors assign them."""
        dev = device or self.device
        history = TzHistory(self._zones)
        per_day: dict[date, list[str]] = {}
        zones: dict[date, str] = {}
        for at in instants:
            local_date = history.local_date(at)
            per_day.setdefault(local_date, []).append(at.astimezone(UTC).isoformat())
            zones[local_date] = history.tz_at(at)
        rows = []
        for local_date, stamps in sorted(per_day.items()):
            refs = orjson.dumps([{"kind": "activity_minutes", "at": s} for s in stamps]).decode()
            rows.append((local_date, self.patient, dev, zones[local_date], len(stamps), 0, 100, True, refs))
        self._write_facts(rows)
        return sorted(per_day)

    def _write_facts(self, rows: list[tuple[Any, ...]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(
                """insert into data_day_facts (local_date, patient_id, device_id, tz, wear_minutes,
                       exercise_sets, steps, qualifying, record_refs)
                   values (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)
                   on conflict (patient_id, local_date, device_id) do update
                      set qualifying = excluded.qualifying, record_refs = excluded.record_refs""",
                rows,
            )

    def time(
        self,
        minutes: float | str,
        day: str,
        *,
        channel: str = "video",
        activity: str = "interactive_communication",
        who: str | None = None,
        hour: int = 10,
        minute: int = 0,
        episode: str | None = None,
        entry_id: str | None = None,
        other_service: str | None = None,
    ) -> str:
        entry = add_entry(
            self.conn,
            NewTimeEntry(
                patient_id=self.patient, episode_id=episode or self.episode,
                practitioner_id=who or self.therapist, activity=TimeActivity(activity),
                channel=TimeChannel(channel), started_at=self.local(day, hour, minute),
                minutes=Decimal(str(minutes)), entry_id=entry_id, other_service=other_service,
            ),
            actor="casebook",
        )  # fmt: skip
        return entry.entry_id

    def rpm(self, start: str, end: str) -> None:
        self.conn.execute(
            "insert into rpm_billing_periods (patient_id, period_start, period_end) values (%s, %s, %s)",
            (self.patient, d(start), d(end)),
        )

    # ----------------------------------------------------------------------- engine -------------
    def compute(self, as_of: str, policies: Mapping[str, Policy] | None = None) -> RecomputeStats:
        pol = dict(available_policies())
        pol.update(policies or {})
        return recompute_patients(self.conn, [self.patient], d(as_of), pol)

    def results(self) -> dict[str, Row]:
        rows = self.conn.execute(
            """select result_key, codes, answer, status, reason, explanation, data_days, minutes,
                      service_date, period_start, period_end
                 from eligibility_results where patient_id = %s""",
            (self.patient,),
        ).fetchall()
        return {r[0]: Row(*r) for r in rows}

    def _key(self, kind: str, suffix: str | int | None, episode: str | None) -> str:
        ep = episode or self.episode
        return f"{kind}/{ep}" + (f"/{suffix}" if suffix is not None else "")

    def supply(self, k: int = 0, episode: str | None = None) -> Row:
        return self.results()[self._key("supply", k, episode)]

    def management(self, month: str, episode: str | None = None) -> Row:
        return self.results()[self._key("management", month, episode)]

    def setup(self, episode: str | None = None) -> Row:
        return self.results()[self._key("setup", None, episode)]

    def keys(self, kind: str) -> list[str]:
        return sorted(k for k in self.results() if k.startswith(kind + "/"))


MEDICARE = load_policy("medicare-2026")
LEGACY = load_policy("legacy-16-day")
