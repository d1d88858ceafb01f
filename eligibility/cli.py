"""`rtm time ...` and `rtm billing ...`: therapist time entries and billing answers from the shell.

Wire into the `rtm` app with `register(app)` (typer). Output never carries more than ids.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

import typer

from eligibility import billing, timeentries
from eligibility.store import mark_all, recompute_dirty, recompute_patients
from rtm.cliutil import new_app
from rtm.contract.clinical import TimeActivity, TimeChannel

time_app = new_app("Therapist time entries: timers, manual entries, corrections.")
billing_app = new_app("RTM billing eligibility: compute, summary, export, release.")



class ExportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"
    fhir = "fhir"


# Options shared by several commands.
Patient = Annotated[str, typer.Option(help="The patient.")]
Episode = Annotated[str, typer.Option(help="The patient's episode of care.")]
Practitioner = Annotated[str, typer.Option(help="The practitioner furnishing the minutes.")]
Activity = Annotated[TimeActivity, typer.Option(help="What the minutes were spent on.")]
Channel = Annotated[TimeChannel, typer.Option(help="How the patient was reached.")]
Actor = Annotated[str | None, typer.Option(help="Who makes the change, for the audit trail.")]
Clinic = Annotated[str | None, typer.Option(help="Only this clinic.")]
Month = Annotated[str, typer.Option(help="The bill month, YYYY-MM.")]


def _connect(role: str) -> Any:
    from rtm.db import connect

    return connect(role, autocommit=True)  # type: ignore[arg-type]


def _month(text: str) -> date:
    return date.fromisoformat(text + "-01") if len(text) == 7 else date.fromisoformat(text).replace(day=1)


def _instant(text: str | None) -> datetime | None:
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise typer.BadParameter("times need an offset, e.g. 2026-03-10T14:05-05:00")
    return value


def _print_entry(e: timeentries.StoredEntry) -> None:
    state = "voided" if e.voided_at else (f"corrected by {e.superseded_by}" if e.superseded_by else "counts")
    fix = f" (corrects {e.supersedes})" if e.supersedes else ""
    print(
        f"{e.entry_id}  {e.started_at:%Y-%m-%d %H:%M}Z  {e.minutes:>7} min  "
        f"{e.practitioner_id} ({e.practitioner_role})  {e.activity}/{e.channel}  {state}{fix}"
    )


# ------------------------------------------------------------------------------ time ------------


@time_app.command("start")
def cmd_time_start(
    patient: Patient, episode: Episode, practitioner: Practitioner, activity: Activity, channel: Channel,
    at: Annotated[str | None, typer.Option(help="Start instant with offset (default: now).")] = None,
) -> None:
    """Start a timer."""
    with _connect("writer") as conn:
        timer = timeentries.start_timer(
            conn,
            timeentries.TimerStart(
                patient_id=patient, episode_id=episode, practitioner_id=practitioner,
                activity=activity, channel=channel, at=_instant(at),
            ),
            actor=practitioner,
        )  # fmt: skip
    print(f"timer {timer} started")


@time_app.command("stop")
def cmd_time_stop(
    timer: Annotated[str | None, typer.Argument(help="The timer to stop.")] = None,
    practitioner: Annotated[str | None, typer.Option(help="Stop this practitioner's running timer.")] = None,
    at: Annotated[str | None, typer.Option(help="Stop instant with offset (default: now).")] = None,
    actor: Actor = None,
) -> None:
    """Stop a timer and record its minutes."""
    with _connect("writer") as conn:
        entry = timeentries.stop_timer(conn, timer, practitioner, at=_instant(at), actor=practitioner or actor)
    _print_entry(entry)


@time_app.command("add")
def cmd_time_add(
    patient: Patient, episode: Episode, practitioner: Practitioner, activity: Activity, channel: Channel,
    minutes: Annotated[str, typer.Option(help="Minutes furnished (decimal).")],
    started_at: Annotated[str | None, typer.Option(help="Instant with offset (default: now).")] = None,
    service_date: Annotated[str | None, typer.Option(help="Date of service, YYYY-MM-DD (default: the "
                                                         "patient-local date of the start).")] = None,
    other_service: Annotated[str | None, typer.Option(
        help="The billed service these minutes already count toward.")] = None,
    entry_id: Annotated[str | None, typer.Option(help="Idempotency key: the same id is stored once.")] = None,
    actor: Actor = None,
) -> None:
    """Record minutes manually."""
    with _connect("writer") as conn:
        entry = timeentries.add_entry(
            conn,
            timeentries.NewTimeEntry(
                patient_id=patient, episode_id=episode, practitioner_id=practitioner,
                activity=activity, channel=channel,
                started_at=_instant(started_at) or datetime.now(UTC), minutes=Decimal(minutes),
                service_date=date.fromisoformat(service_date) if service_date else None,
                other_service=other_service, entry_id=entry_id,
            ),
            actor=actor or practitioner,
        )  # fmt: skip
    _print_entry(entry)


@time_app.command("correct")
def cmd_time_correct(
    entry: Annotated[str, typer.Argument(help="The entry to correct.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")],
    minutes: Annotated[str | None, typer.Option(help="Corrected minutes (default: unchanged).")] = None,
    activity: Annotated[TimeActivity | None, typer.Option(help="Corrected activity (default: unchanged).")] = None,
    channel: Annotated[TimeChannel | None, typer.Option(help="Corrected channel (default: unchanged).")] = None,
    started_at: Annotated[str | None, typer.Option(help="Corrected start with offset (default: unchanged).")] = None,
    service_date: Annotated[str | None, typer.Option(help="Corrected date of service (default: unchanged).")] = None,
    actor: Actor = None,
) -> None:
    """Replace an entry by a corrected copy (kept in the audit trail)."""
    with _connect("writer") as conn:
        fixed = timeentries.correct_entry(
            conn,
            entry,
            timeentries.Correction(
                reason=reason, minutes=Decimal(minutes) if minutes else None, activity=activity, channel=channel,
                started_at=_instant(started_at),
                service_date=date.fromisoformat(service_date) if service_date else None,
            ),
            actor=actor,
        )  # fmt: skip
    _print_entry(fixed)


@time_app.command("void")
def cmd_time_void(
    entry: Annotated[str, typer.Argument(help="The entry logged in error.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")],
    actor: Actor = None,
) -> None:
    """Mark an entry as logged in error."""
    with _connect("writer") as conn:
        _print_entry(timeentries.void_entry(conn, entry, reason, actor=actor))


@time_app.command("list")
def cmd_time_list(
    patient: Annotated[str | None, typer.Option(help="The patient whose entries to list.")] = None,
    month: Annotated[str | None, typer.Option(help="Only this month, YYYY-MM.")] = None,
    all: Annotated[bool, typer.Option("--all", help="Include corrected and voided entries.")] = False,
    history: Annotated[str | None, typer.Option(metavar="ENTRY", help="Show the audit trail of an entry.")] = None,
) -> None:
    """A patient's entries, or one entry's audit trail."""
    with _connect("reader" if not history else "writer") as conn:
        if history:
            for row in timeentries.history(conn, history):
                when = f"{row['at']:%Y-%m-%d %H:%M:%S}"
                print(
                    f"{row['audit_id']:>6}  {when}  {row['action']:6}  {row['entry_id']}  by {row['actor']}"
                )
            return
        if patient is None:
            raise typer.BadParameter("name the --patient (or an entry's --history)")
        for e in timeentries.list_entries(conn, patient, _month(month) if month else None, include_replaced=all):
            _print_entry(e)


# ------------------------------------------------------------------------------ billing ---------


@billing_app.command("compute")
def cmd_billing_compute(
    as_of: Annotated[str | None, typer.Option(help="The computation date (default: today, UTC).")] = None,
    all: Annotated[bool, typer.Option("--all", help="Mark every patient first.")] = False,
    patient: Annotated[list[str] | None, typer.Option(help="Recompute this patient now (repeatable).")] = None,
    batch: Annotated[int, typer.Option(min=1, help="Patients per batch.")] = 2000,
) -> None:
    """Recompute patients whose data changed (or --all, or --patient)."""
    day = date.fromisoformat(as_of) if as_of else datetime.now(UTC).date()
    with _connect("writer") as conn:
        if patient:
            stats = recompute_patients(conn, patient, day)
        else:
            if all:
                mark_all(conn)
            stats = recompute_dirty(conn, day, batch=batch)
    s = stats.saved
    print(
        f"recomputed {stats.patients} patients, {stats.results} results in {stats.seconds:.2f}s: "
        f"{s.inserted} new, {s.updated} changed, {s.status_only} status only, {s.unchanged} unchanged, "
        f"{s.deleted} withdrawn, {s.amendments} amendments"
    )


def _print_summaries(items: list[billing.Summary]) -> None:
    print(f"{'patient':24} {'kind':10} {'period':23} {'codes':28} {'DOS':10} {'status':11} reason")
    for s in items:
        codes = " ".join(
            f"{c.code}" + (f"x{c.units}" if c.units > 1 else "") + "".join(f"-{m}" for m in c.modifiers)
            for c in s.codes
        )
        period = f"{s.period_start}..{s.period_end}"
        dos = s.service_date.isoformat() if s.service_date else "-"
        print(
            f"{s.patient_id:24} {s.kind:10} {period:23} {codes or '-':28} {dos:10} {s.status:11} {s.reason}"
        )


@billing_app.command("summary")
def cmd_billing_summary(
    clinic: Clinic = None,
    month: Annotated[str | None, typer.Option(help="Only this bill month, YYYY-MM.")] = None,
    patient: Annotated[str | None, typer.Option(help="Only this patient.")] = None,
) -> None:
    """Answers per patient per period/month."""
    with _connect("reader") as conn:
        items = billing.summaries(
            conn, clinic_id=clinic, month=_month(month) if month else None, patient_id=patient,
        )  # fmt: skip
    _print_summaries(items)


@billing_app.command("export")
def cmd_billing_export(
    clinic: Annotated[str, typer.Option(help="The clinic to export.")],
    month: Month,
    format: Annotated[ExportFormat, typer.Option(help="Output format.")] = ExportFormat.csv,
    all: Annotated[bool, typer.Option("--all", help="Include results without a code.")] = False,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")]
    = None,
) -> None:
    """Export a clinic's bill month for a billing job."""
    with _connect("reader") as conn:
        text = billing.export(conn, format.value, clinic, _month(month), billable_only=not all)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)


@billing_app.command("release")
def cmd_billing_release(
    clinic: Annotated[str, typer.Option(help="The clinic whose answers to release.")],
    month: Month,
    dry_run: Annotated[bool, typer.Option(help="Show what would be released, change nothing.")] = False,
    actor: Annotated[str | None, typer.Option(help="Who releases, for the audit trail.")] = None,
) -> None:
    """Hand final answers of a bill month to billing."""
    with _connect("writer") as conn:
        report = billing.release(conn, clinic, _month(month), dry_run=dry_run, actor=actor)
    verb = "would release" if report.dry_run else f"released as {report.release_id}"
    print(f"{verb}: {len(report.released)} results; {len(report.held)} still provisional")
    _print_summaries(report.released)


@billing_app.command("amendments")
def cmd_billing_amendments(clinic: Clinic = None) -> None:
    """Changes to released answers."""
    with _connect("reader") as conn:
        for a in billing.amendments(conn, clinic_id=clinic):
            state = f"released in {a['released_in']}" if a["released_in"] else "awaiting release"
            print(
                f"{a['amendment_id']:>6}  {a['result_key']}  amends {a['release_id']}  {state}: {a['reason']}"
            )


def register(app: typer.Typer) -> None:
    """Add `time` and `billing` to the `rtm` app."""
    app.add_typer(time_app, name="time")
    app.add_typer(billing_app, name="billing")
