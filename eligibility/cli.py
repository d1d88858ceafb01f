"""`rtm time ...` and `rtm billing ...`: therapist time entries and billing answers from the shell.

Wire into the main parser with `register(subparsers)`. Output never carries more than ids.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from eligibility import billing, timeentries
from eligibility.store import mark_all, recompute_dirty, recompute_patients
from rtm.contract.clinical import TimeActivity, TimeChannel

Handler = Callable[[argparse.Namespace], int]


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
        raise SystemExit("times need an offset, e.g. 2026-03-10T14:05-05:00")
    return value


def _print_entry(e: timeentries.StoredEntry) -> None:
    state = "voided" if e.voided_at else (f"corrected by {e.superseded_by}" if e.superseded_by else "counts")
    fix = f" (corrects {e.supersedes})" if e.supersedes else ""
    print(
        f"{e.entry_id}  {e.started_at:%Y-%m-%d %H:%M}Z  {e.minutes:>7} min  "
        f"{e.practitioner_id} ({e.practitioner_role})  {e.activity}/{e.channel}  {state}{fix}"
    )


# ------------------------------------------------------------------------------ time ------------


def cmd_time_start(args: argparse.Namespace) -> int:
    with _connect("writer") as conn:
        timer = timeentries.start_timer(
            conn,
            timeentries.TimerStart(
                patient_id=args.patient, episode_id=args.episode, practitioner_id=args.practitioner,
                activity=TimeActivity(args.activity), channel=TimeChannel(args.channel), at=_instant(args.at),
            ),
            actor=args.practitioner,
        )  # fmt: skip
    print(f"timer {timer} started")
    return 0


def cmd_time_stop(args: argparse.Namespace) -> int:
    with _connect("writer") as conn:
        entry = timeentries.stop_timer(
            conn, args.timer, args.practitioner, at=_instant(args.at), actor=args.practitioner or args.actor
        )
    _print_entry(entry)
    return 0


def cmd_time_add(args: argparse.Namespace) -> int:
    with _connect("writer") as conn:
        entry = timeentries.add_entry(
            conn,
            timeentries.NewTimeEntry(
                patient_id=args.patient, episode_id=args.episode, practitioner_id=args.practitioner,
                activity=TimeActivity(args.activity), channel=TimeChannel(args.channel),
                started_at=_instant(args.started_at) or datetime.now(UTC), minutes=Decimal(args.minutes),
                service_date=date.fromisoformat(args.service_date) if args.service_date else None,
                other_service=args.other_service, entry_id=args.entry_id,
            ),
            actor=args.actor or args.practitioner,
        )  # fmt: skip
    _print_entry(entry)
    return 0


def cmd_time_correct(args: argparse.Namespace) -> int:
    with _connect("writer") as conn:
        entry = timeentries.correct_entry(
            conn,
            args.entry,
            timeentries.Correction(
                reason=args.reason, minutes=Decimal(args.minutes) if args.minutes else None,
                activity=TimeActivity(args.activity) if args.activity else None,
                channel=TimeChannel(args.channel) if args.channel else None,
                started_at=_instant(args.started_at),
                service_date=date.fromisoformat(args.service_date) if args.service_date else None,
            ),
            actor=args.actor,
        )  # fmt: skip
    _print_entry(entry)
    return 0


def cmd_time_void(args: argparse.Namespace) -> int:
    with _connect("writer") as conn:
        _print_entry(timeentries.void_entry(conn, args.entry, args.reason, actor=args.actor))
    return 0


def cmd_time_list(args: argparse.Namespace) -> int:
    with _connect("reader" if not args.history else "writer") as conn:
        if args.history:
            for row in timeentries.history(conn, args.history):
                when = f"{row['at']:%Y-%m-%d %H:%M:%S}"
                print(
                    f"{row['audit_id']:>6}  {when}  {row['action']:6}  {row['entry_id']}  by {row['actor']}"
                )
            return 0
        month = _month(args.month) if args.month else None
        for e in timeentries.list_entries(conn, args.patient, month, include_replaced=args.all):
            _print_entry(e)
    return 0


# ------------------------------------------------------------------------------ billing ---------


def cmd_billing_compute(args: argparse.Namespace) -> int:
    as_of = date.fromisoformat(args.as_of) if args.as_of else datetime.now(UTC).date()
    with _connect("writer") as conn:
        if args.patient:
            stats = recompute_patients(conn, args.patient, as_of)
        else:
            if args.all:
                mark_all(conn)
            stats = recompute_dirty(conn, as_of, batch=args.batch)
    s = stats.saved
    print(
        f"recomputed {stats.patients} patients, {stats.results} results in {stats.seconds:.2f}s: "
        f"{s.inserted} new, {s.updated} changed, {s.status_only} status only, {s.unchanged} unchanged, "
        f"{s.deleted} withdrawn, {s.amendments} amendments"
    )
    return 0


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


def cmd_billing_summary(args: argparse.Namespace) -> int:
    with _connect("reader") as conn:
        items = billing.summaries(
            conn,
            clinic_id=args.clinic,
            month=_month(args.month) if args.month else None,
            patient_id=args.patient,
        )
    _print_summaries(items)
    return 0


def cmd_billing_export(args: argparse.Namespace) -> int:
    with _connect("reader") as conn:
        text = billing.export(conn, args.format, args.clinic, _month(args.month), billable_only=not args.all)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_billing_release(args: argparse.Namespace) -> int:
    with _connect("writer") as conn:
        report = billing.release(
            conn, args.clinic, _month(args.month), dry_run=args.dry_run, actor=args.actor
        )
    verb = "would release" if report.dry_run else f"released as {report.release_id}"
    print(f"{verb}: {len(report.released)} results; {len(report.held)} still provisional")
    _print_summaries(report.released)
    return 0


def cmd_billing_amendments(args: argparse.Namespace) -> int:
    with _connect("reader") as conn:
        for a in billing.amendments(conn, clinic_id=args.clinic):
            state = f"released in {a['released_in']}" if a["released_in"] else "awaiting release"
            print(
                f"{a['amendment_id']:>6}  {a['result_key']}  amends {a['release_id']}  {state}: {a['reason']}"
            )
    return 0


# ------------------------------------------------------------------------------ wiring ----------


def _entry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patient", required=True)
    p.add_argument("--episode", required=True)
    p.add_argument("--practitioner", required=True)
    p.add_argument("--activity", required=True, choices=[a.value for a in TimeActivity])
    p.add_argument("--channel", required=True, choices=[c.value for c in TimeChannel])


def register(subparsers: Any) -> None:
    """Add `time` and `billing` to the `rtm` command (argparse subparsers of the main parser)."""
    time_p = subparsers.add_parser("time", help="therapist time entries: timers, manual entries, corrections")
    t = time_p.add_subparsers(dest="time_command", required=True)

    p = t.add_parser("start", help="start a timer")
    _entry_args(p)
    p.add_argument("--at", help="start instant with offset (default: now)")
    p.set_defaults(func=cmd_time_start)

    p = t.add_parser("stop", help="stop a timer and record its minutes")
    p.add_argument("timer", nargs="?")
    p.add_argument("--practitioner", help="stop this practitioner's running timer")
    p.add_argument("--at")
    p.add_argument("--actor")
    p.set_defaults(func=cmd_time_stop)

    p = t.add_parser("add", help="record minutes manually")
    _entry_args(p)
    p.add_argument("--minutes", required=True)
    p.add_argument("--started-at", help="instant with offset (default: now)")
    p.add_argument("--service-date")
    p.add_argument("--other-service", help="the billed service these minutes already count toward")
    p.add_argument("--entry-id", help="idempotency key: the same id is stored once")
    p.add_argument("--actor")
    p.set_defaults(func=cmd_time_add)

    p = t.add_parser("correct", help="replace an entry by a corrected copy (kept in the audit trail)")
    p.add_argument("entry")
    p.add_argument("--reason", required=True)
    p.add_argument("--minutes")
    p.add_argument("--activity", choices=[a.value for a in TimeActivity])
    p.add_argument("--channel", choices=[c.value for c in TimeChannel])
    p.add_argument("--started-at")
    p.add_argument("--service-date")
    p.add_argument("--actor")
    p.set_defaults(func=cmd_time_correct)

    p = t.add_parser("void", help="mark an entry as logged in error")
    p.add_argument("entry")
    p.add_argument("--reason", required=True)
    p.add_argument("--actor")
    p.set_defaults(func=cmd_time_void)

    p = t.add_parser("list", help="a patient's entries, or one entry's audit trail")
    p.add_argument("--patient")
    p.add_argument("--month", help="YYYY-MM")
    p.add_argument("--all", action="store_true", help="include corrected and voided entries")
    p.add_argument("--history", metavar="ENTRY", help="show the audit trail of an entry")
    p.set_defaults(func=cmd_time_list)

    bill_p = subparsers.add_parser(
        "billing", help="RTM billing eligibility: compute, summary, export, release"
    )
    b = bill_p.add_subparsers(dest="billing_command", required=True)

    p = b.add_parser("compute", help="recompute patients whose data changed (or --all, or --patient)")
    p.add_argument("--as-of", help="the computation date (default: today, UTC)")
    p.add_argument("--all", action="store_true", help="mark every patient first")
    p.add_argument("--patient", action="append", help="recompute this patient now (repeatable)")
    p.add_argument("--batch", type=int, default=2000)
    p.set_defaults(func=cmd_billing_compute)

    p = b.add_parser("summary", help="answers per patient per period/month")
    p.add_argument("--clinic")
    p.add_argument("--month", help="bill month YYYY-MM")
    p.add_argument("--patient")
    p.set_defaults(func=cmd_billing_summary)

    p = b.add_parser("export", help="export a clinic's bill month for a billing job")
    p.add_argument("--clinic", required=True)
    p.add_argument("--month", required=True)
    p.add_argument("--format", choices=["csv", "jsonl", "fhir"], default="csv")
    p.add_argument("--all", action="store_true", help="include results without a code")
    p.add_argument("--output", "-o")
    p.set_defaults(func=cmd_billing_export)

    p = b.add_parser("release", help="hand final answers of a bill month to billing")
    p.add_argument("--clinic", required=True)
    p.add_argument("--month", required=True)
    p.add_argument("--dry-run", action="store_true", help="show what would be released, change nothing")
    p.add_argument("--actor")
    p.set_defaults(func=cmd_billing_release)

    p = b.add_parser("amendments", help="changes to released answers")
    p.add_argument("--clinic")
    p.set_defaults(func=cmd_billing_amendments)
