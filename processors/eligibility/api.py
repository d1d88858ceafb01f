"""A FastAPI router for therapist time entries and billing summaries, for the gateway to mount:

    app.include_router(eligibility_router(writer_dependency, reader_dependency), prefix="/rtm")

The gateway supplies the database connections (and authentication): one dependency yielding a
writer connection for time entries, one yielding a reader connection for billing summaries.
(No `from __future__ import annotations` here: FastAPI must resolve the local Annotated aliases.)
"""

from collections.abc import Callable, Iterator
from datetime import date
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from processors.eligibility import billing, timeentries

Conn = psycopg.Connection[Any]
ConnDependency = Callable[..., Iterator[Conn]] | Callable[..., Conn]
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


def _month(text: str) -> date:
    return date.fromisoformat(text + "-01")


def _refuse(exc: timeentries.TimeEntryError) -> HTTPException:
    return HTTPException(status_code=409 if "already" in str(exc) else 422, detail=str(exc))


def eligibility_router(writer: ConnDependency, reader: ConnDependency) -> APIRouter:
    router = APIRouter(tags=["rtm-eligibility"])
    Writer = Annotated[Conn, Depends(writer)]
    Reader = Annotated[Conn, Depends(reader)]

    @router.post("/time-entries", status_code=201)
    def add_time_entry(body: timeentries.NewTimeEntry, conn: Writer) -> timeentries.StoredEntry:
        try:
            return timeentries.add_entry(conn, body, actor=body.practitioner_id)
        except timeentries.TimeEntryError as exc:
            raise _refuse(exc) from exc

    @router.post("/time-entries/{entry_id}/corrections", status_code=201)
    def correct_time_entry(
        entry_id: str, body: timeentries.Correction, conn: Writer
    ) -> timeentries.StoredEntry:
        try:
            return timeentries.correct_entry(conn, entry_id, body)
        except timeentries.TimeEntryError as exc:
            raise _refuse(exc) from exc

    @router.post("/time-entries/{entry_id}/void")
    def void_time_entry(entry_id: str, body: VoidRequest, conn: Writer) -> timeentries.StoredEntry:
        try:
            return timeentries.void_entry(conn, entry_id, body.reason)
        except timeentries.TimeEntryError as exc:
            raise _refuse(exc) from exc

    @router.get("/time-entries")
    def list_time_entries(
        conn: Writer, patient_id: str, month: Month | None = None, include_replaced: bool = False
    ) -> list[timeentries.StoredEntry]:
        return timeentries.list_entries(conn, patient_id, _month(month) if month else None, include_replaced)

    @router.get("/time-entries/{entry_id}/history")
    def time_entry_history(entry_id: str, conn: Writer) -> list[dict[str, Any]]:
        return timeentries.history(conn, entry_id)

    @router.post("/timers", status_code=201)
    def start_timer(body: timeentries.TimerStart, conn: Writer) -> TimerOut:
        try:
            return TimerOut(timer_id=timeentries.start_timer(conn, body))
        except timeentries.TimeEntryError as exc:
            raise _refuse(exc) from exc

    @router.post("/timers/stop")
    def stop_timer(body: StopRequest, conn: Writer) -> timeentries.StoredEntry:
        try:
            return timeentries.stop_timer(conn, body.timer_id, body.practitioner_id)
        except timeentries.TimeEntryError as exc:
            raise _refuse(exc) from exc

    @router.get("/billing/summaries")
    def billing_summaries(
        conn: Reader,
        clinic_id: str | None = None,
        month: Month | None = None,
        patient_id: str | None = None,
        explain: bool = False,
    ) -> list[billing.Summary]:
        return billing.summaries(
            conn, clinic_id=clinic_id, month=_month(month) if month else None, patient_id=patient_id,
            with_explanation=explain,
        )  # fmt: skip

    @router.get("/billing/export")
    def billing_export(
        conn: Reader, clinic_id: str, month: Month, format: Literal["csv", "jsonl", "fhir"] = "csv"
    ) -> Response:
        media = {"csv": "text/csv", "jsonl": "application/x-ndjson", "fhir": "application/fhir+json"}[format]
        return Response(billing.export(conn, format, clinic_id, _month(month)), media_type=media)

    @router.get("/billing/amendments")
    def billing_amendments(conn: Reader, clinic_id: str | None = None) -> list[dict[str, Any]]:
        return billing.amendments(conn, clinic_id=clinic_id)

    return router
