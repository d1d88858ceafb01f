"""A FastAPI router for therapist time entries and billing summaries, for the gateway to mount:

    app.include_router(eligibility_router(writer_dependency, reader_dependency, caller_dependency, prefix="/v1"))

The gateway supplies the database connections and authentication: one dependency yielding a
writer connection for time entries, one yielding a reader connection for billing summaries, and
one returning the authenticated `Caller` (its clinic, and the actor for the audit trail; it runs
first and raises on a bad credential). Every route acts for that clinic only: a patient, episode,
practitioner, entry or timer of another clinic answers 404 exactly like one that does not exist,
and lists, summaries and exports hold the caller's clinic only. A refused request raises its
typed error (`timeentries.TimeEntryError`, a `rtm.errors.CodedError`) for the mounting app to map
to a problem response (the gateway: `ingest/problems.py`).
(No `from __future__ import annotations` here: FastAPI must resolve the local Annotated aliases.)
"""

import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from eligibility import billing, ownership, timeentries
from rtm.db import Conn

ConnDependency = Callable[..., Iterator[Conn]] | Callable[..., Conn]


@dataclass(frozen=True)
class Caller:
    """Who is asking: the clinic every request is confined to, and the actor the audit trail records."""

    clinic_id: str
    actor: str


CallerDependency = Callable[..., Caller] | Callable[..., Awaitable[Caller]]
Month = Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM")]


class VoidRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: Annotated[str, Field(min_length=3, max_length=500)]


class StopRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    timer_id: str | None = None
    practitioner_id: str | None = None


class TimerOut(BaseModel):
    timer_id: str


# Fixed namespace of clinic-scoped entry ids: changing it would change every such id, so never do.
_ENTRY_ID_NAMESPACE = uuid.UUID("0b9f3c2e-6d1a-5e8f-9a47-3c2d1e0f4b5a")


def scoped_entry_id(clinic_id: str, client_id: str) -> str:
    """A client-chosen entry id is an idempotency key of its clinic: the stored id is derived from
    both, so two clinics choosing the same id neither collide nor learn of each other's entry."""
    return str(uuid.uuid5(_ENTRY_ID_NAMESPACE, f"{clinic_id}|{client_id}"))


def _month(text: str) -> date:
    try:
        return date.fromisoformat(text + "-01")
    except ValueError:  # e.g. 2026-13: the pattern lets it through, the calendar does not
        raise HTTPException(status_code=400, detail=f"month {text!r} is not a calendar month (YYYY-MM)") from None


def _require(found: bool, what: str) -> None:
    """404 alike for what does not exist and for what is another clinic's (existence is not leaked)."""
    if not found:
        raise HTTPException(status_code=404, detail=f"no such {what} in this clinic")


def _own_clinic(who: Caller, clinic_id: str | None) -> str:
    """The caller's clinic; a clinic_id parameter, if sent, must name it."""
    if clinic_id is not None and clinic_id != who.clinic_id:
        raise HTTPException(status_code=403, detail="a clinic credential reads its own clinic only")
    return who.clinic_id


def _own_care(conn: Conn, who: Caller, patient_id: str, episode_id: str, practitioner_id: str) -> None:
    _require(ownership.patient(conn, who.clinic_id, patient_id), "patient")
    _require(ownership.episode(conn, who.clinic_id, episode_id), "episode")
    _require(ownership.practitioner(conn, who.clinic_id, practitioner_id), "practitioner")


def eligibility_router(
    writer: ConnDependency, reader: ConnDependency, caller: CallerDependency, prefix: str = ""
) -> APIRouter:
    # The prefix belongs to the router (not to include_router) so that each route's own path is the
    # full template the gateway's access log and metrics label requests with.
    router = APIRouter(prefix=prefix, tags=["rtm-eligibility"])
    # The caller comes first in every route: authentication runs before a connection is taken.
    Who = Annotated[Caller, Depends(caller)]
    Writer = Annotated[Conn, Depends(writer)]
    Reader = Annotated[Conn, Depends(reader)]

    @router.post("/time-entries", status_code=201)
    def add_time_entry(who: Who, body: timeentries.NewTimeEntry, conn: Writer) -> timeentries.StoredEntry:
        _own_care(conn, who, body.patient_id, body.episode_id, body.practitioner_id)
        if body.entry_id is not None:
            body = body.model_copy(update={"entry_id": scoped_entry_id(who.clinic_id, body.entry_id)})
        return timeentries.add_entry(conn, body, actor=who.actor)

    @router.post("/time-entries/{entry_id}/corrections", status_code=201)
    def correct_time_entry(
        who: Who, entry_id: str, body: timeentries.Correction, conn: Writer
    ) -> timeentries.StoredEntry:
        _require(ownership.time_entry(conn, who.clinic_id, entry_id), "time entry")
        if body.episode_id is not None:
            _require(ownership.episode(conn, who.clinic_id, body.episode_id), "episode")
        if body.entry_id is not None:
            body = body.model_copy(update={"entry_id": scoped_entry_id(who.clinic_id, body.entry_id)})
        return timeentries.correct_entry(conn, entry_id, body, actor=who.actor)

    @router.post("/time-entries/{entry_id}/void")
    def void_time_entry(who: Who, entry_id: str, body: VoidRequest, conn: Writer) -> timeentries.StoredEntry:
        _require(ownership.time_entry(conn, who.clinic_id, entry_id), "time entry")
        return timeentries.void_entry(conn, entry_id, body.reason, actor=who.actor)

    @router.get("/time-entries")
    def list_time_entries(
        who: Who, conn: Writer, patient_id: str, month: Month | None = None, include_replaced: bool = False
    ) -> list[timeentries.StoredEntry]:
        _require(ownership.patient(conn, who.clinic_id, patient_id), "patient")
        return timeentries.list_entries(
            conn, patient_id, _month(month) if month else None, include_replaced, clinic_id=who.clinic_id
        )

    @router.get("/time-entries/{entry_id}/history")
    def time_entry_history(who: Who, entry_id: str, conn: Writer) -> list[dict[str, Any]]:
        _require(ownership.time_entry(conn, who.clinic_id, entry_id), "time entry")
        return timeentries.history(conn, entry_id)

    @router.post("/timers", status_code=201)
    def start_timer(who: Who, body: timeentries.TimerStart, conn: Writer) -> TimerOut:
        _own_care(conn, who, body.patient_id, body.episode_id, body.practitioner_id)
        try:
            return TimerOut(timer_id=timeentries.start_timer(conn, body, actor=who.actor))
        except psycopg.errors.UniqueViolation as exc:  # a concurrent start for the same practitioner
            raise timeentries.TimeEntryConflict("practitioner already has a timer running") from exc

    @router.post("/timers/stop")
    def stop_timer(who: Who, body: StopRequest, conn: Writer) -> timeentries.StoredEntry:
        if body.timer_id is not None:
            _require(ownership.timer(conn, who.clinic_id, body.timer_id), "timer")
        elif body.practitioner_id is not None:
            _require(ownership.practitioner(conn, who.clinic_id, body.practitioner_id), "practitioner")
        else:
            raise HTTPException(status_code=422, detail="name the timer_id or the practitioner_id")
        return timeentries.stop_timer(conn, body.timer_id, body.practitioner_id, actor=who.actor)

    @router.get("/billing/summaries")
    def billing_summaries(
        who: Who,
        conn: Reader,
        clinic_id: Annotated[str | None, Query(description="optional; must be the caller's clinic")] = None,
        month: Month | None = None,
        patient_id: str | None = None,
        explain: bool = False,
    ) -> list[billing.Summary]:
        clinic = _own_clinic(who, clinic_id)
        if patient_id is not None:
            _require(ownership.patient(conn, clinic, patient_id), "patient")
        return billing.summaries(
            conn, clinic_id=clinic, month=_month(month) if month else None, patient_id=patient_id,
            with_explanation=explain,
        )  # fmt: skip

    @router.get("/billing/export")
    def billing_export(
        who: Who,
        conn: Reader,
        month: Month,
        clinic_id: Annotated[str | None, Query(description="optional; must be the caller's clinic")] = None,
        format: Literal["csv", "jsonl", "fhir"] = "csv",
    ) -> Response:
        clinic = _own_clinic(who, clinic_id)
        media = {"csv": "text/csv", "jsonl": "application/x-ndjson", "fhir": "application/fhir+json"}[format]
        return Response(billing.export(conn, format, clinic, _month(month)), media_type=media)

    @router.get("/billing/amendments")
    def billing_amendments(
        who: Who,
        conn: Reader,
        clinic_id: Annotated[str | None, Query(description="optional; must be the caller's clinic")] = None,
    ) -> list[dict[str, Any]]:
        return billing.amendments(conn, clinic_id=_own_clinic(who, clinic_id))

    return router
