"""`rtm faults`: the simulated cohort through the real gateway, broker, workers and database while
faults are injected one after another; after each, every acknowledged event must be stored exactly
once and the derived tables must equal those of a clean run of the same cohort. A table, then one
JSON line (faults, acknowledged, missing, duplicated, derived_equal); exit 1 when a target is
missed. `--soak 30m`: sustained load with periodic faults, sampling memory. See docs/faults.md."""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from rtm.settings import Settings, get_settings
from simulation.cohort import Cohort, SimPatient, make_cohort
from simulation.seed import seed_care_context
from tools.faults import checks, report
from tools.faults.injectors import BY_NAME, FAULTS, Context, Fault
from tools.faults.load import (
    Client,
    Device,
    Item,
    Ledger,
    Upload,
    cohort_items,
    create_clinic_token,
    enrol_devices,
    uploads_for,
)
from tools.faults.stack import FaultStack, Takeover


@dataclass(frozen=True)
class Options:
    pace_s: float  # between one device's requests: uploads spread over time, so faults land mid-load
    outage_s: float
    quiet_s: float
    settle_timeout_s: float
    phase_timeout_s: float
    seed: int


def _cohort(n_patients: int, days: int, seed: int) -> Cohort:
    """The simulated cohort, ending the day before yesterday (UTC): a patient's local day west of
    UTC ends up to 12 h after the UTC date does, so a cohort ending yesterday sends events the
    gateway refuses as future-timestamped in the first hours after midnight UTC."""
    return make_cohort(n_patients, days, seed, start=datetime.now(UTC).date() - timedelta(days=days + 1))


def _connect(settings: Settings) -> Callable[[], psycopg.Connection[Any]]:
    return lambda: psycopg.connect(settings.dsn("owner"), autocommit=True, connect_timeout=3)


def _prepare(stack: FaultStack, cohort: Cohort, patients: list[SimPatient]) -> dict[str, Device]:
    """Care context seeded as the simulated clinic has it; devices enrolled through the gateway."""
    settings = stack.settings
    with _connect(settings)() as conn:
        seed_care_context(conn, Cohort(patients, cohort.start, cohort.days, cohort.seed))
    assert stack.gateway is not None
    token = asyncio.run(create_clinic_token(settings))
    return asyncio.run(enrol_devices(stack.gateway.url, token, cohort, patients))


def _uploads(devices: dict[str, Device], items: dict[str, list[Item]], patients: list[SimPatient]
             ) -> dict[Device, list[Upload]]:
    return {devices[p.patient_id]: uploads_for(devices[p.patient_id], items[p.patient_id]) for p in patients}


async def _phase(stack: FaultStack, fault: Fault | None, uploads: dict[Device, list[Upload]], ledger: Ledger,
                 opt: Options, rng: random.Random) -> list[str]:
    """The slice uploads; the fault strikes once a share of its requests were answered."""
    assert stack.gateway is not None
    loop = asyncio.get_running_loop()
    if fault is not None and fault.shape is not None:
        uploads = fault.shape(uploads, rng)
    total = sum(len(u) for u in uploads.values())
    client = Client(stack.gateway.url, ledger, rng, deadline=loop.time() + opt.phase_timeout_s)
    trigger = asyncio.Event()

    def progress(done: int) -> None:
        if fault is not None and done >= fault.at * total:
            trigger.set()

    load = asyncio.create_task(client.run(uploads, opt.pace_s, progress))
    notes: list[str] = []
    if fault is not None and fault.inject is not None:
        waiter = asyncio.create_task(trigger.wait())
        await asyncio.wait([waiter, load], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        notes += await fault.inject(Context(stack, list(uploads), opt.outage_s))
    await load
    notes.append(f"slowest answer {ledger.slowest_s:.1f} s")
    if ledger.unacked:
        notes.append(f"{len(ledger.unacked)} never acknowledged")
    if ledger.refused:
        codes = sorted(set(ledger.refused.values()))
        notes.append(f"{len(ledger.refused)} refused ({', '.join(codes)})")
    statuses = {k: v for k, v in ledger.statuses.items() if not k.startswith("2")}
    if statuses:
        notes.append("answers " + " ".join(f"{k}:{v}" for k, v in sorted(statuses.items())))
    return notes


def _judge(stack: FaultStack, name: str, ledger: Ledger, patients: list[str], opt: Options, started: float,
           notes: list[str], reference: dict[str, tuple[int, str]] | None, clean_db: str | None = None
           ) -> report.Row:
    settled = checks.settle(_connect(stack.settings), ledger.acked, patients, stack.revive, stack.still_starting,
                            opt.quiet_s, opt.settle_timeout_s)
    s = settled.stored
    notes = notes + settled.notes
    takeovers = [_takeover(t, settled.all_stored_at) for t in stack.takeovers]
    stack.takeovers = []
    notes += [_takeover_note(t) for t in takeovers]
    if s.other_content:
        notes.append(f"{s.other_content} stored with content other than acknowledged")
    equal: bool | None = None
    if reference is not None:
        with _connect(stack.settings)() as conn:
            mine = checks.derived(conn, patients)
        diff = checks.differing(mine, reference)
        equal = not diff
        if diff:
            notes.append("differs: " + ", ".join(diff))
            if clean_db is not None:
                _write_differences(stack, name, patients, clean_db, diff)
    return report.Row(name, s.acknowledged, s.stored, len(s.missing), s.duplicated, equal,
                      time.monotonic() - started, notes, absent=len(s.missing) - s.other_content,
                      takeovers=takeovers)


def _takeover(t: Takeover, all_stored_at: float | None) -> dict[str, float | None]:
    """Seconds from the kill until the replacement was ready, and from then until every
    acknowledged event was stored (None: it never was, within the wait)."""
    ready = None if t.ready_at is None else round(t.ready_at - t.killed_at, 1)
    caught_up = None
    if all_stored_at is not None:
        caught_up = round(max(0.0, all_stored_at - (t.ready_at if t.ready_at is not None else t.killed_at)), 1)
    return {"ready_s": ready, "caught_up_s": caught_up}


def _takeover_note(t: dict[str, float | None]) -> str:
    if t["ready_s"] is None:
        return "replacement never ready"
    after = "never" if t["caught_up_s"] is None else f"{t['caught_up_s']:.1f} s later"
    return f"replacement ready {t['ready_s']:.1f} s after the kill, everything stored {after}"


def _recover(stack: FaultStack, ledger: Ledger, patients: list[str], opt: Options, missing: int) -> str:
    """After a fault that left events missing or work pending, restart the workers (the pipeline
    did not recover by itself) so that the next fault is judged on its own, and say how much of
    what was missing was only stuck. The row keeps the count from before this help."""
    stack.restarts["worker (harness)"] = stack.restarts.get("worker (harness)", 0) + 1
    try:
        stack.restart_workers()
    except RuntimeError:
        return "workers restarted by the harness did not become ready"
    s = checks.settle(_connect(stack.settings), ledger.acked, patients, stack.revive, stack.still_starting,
                      opt.quiet_s, opt.settle_timeout_s).stored
    if not missing:
        return "workers restarted by the harness (work was pending)"
    still = len(s.missing) - s.other_content
    return (f"workers restarted by the harness: {missing - still} of {missing} absent then stored, "
            f"{still} still absent")


def _write_differences(stack: FaultStack, name: str, patients: list[str], clean_db: str, diff: list[str]) -> None:
    """Rows that differ from the clean run, into differences.txt in the run's folder (kept when a
    target is missed)."""
    clean_settings = stack.settings.model_copy(update={"pg_database": clean_db})
    lines = [f"== {name}"]
    with _connect(stack.settings)() as conn, _connect(clean_settings)() as ref:
        for table in (d.split(" ")[0] for d in diff):
            lines += [f"-- {table}", *checks.explain_difference(conn, ref, table, patients)]
    with open(stack.root / "differences.txt", "a") as out:
        out.write("\n".join(lines) + "\n")


def _slices(n: int, cohort: Cohort, per_fault: int, items: dict[str, list[Item]]) -> list[list[SimPatient]]:
    """`per_fault` patients for each of `n` faults, dealt so that every slice has about as many
    events (patients who never wore their device leave nothing for a fault to act on)."""
    order = sorted(cohort.patients, key=lambda p: (-len(items[p.patient_id]), p.index))
    slices: list[list[SimPatient]] = [[] for _ in range(n)]
    load = [0] * n
    for p in order:
        k = min((i for i in range(n) if len(slices[i]) < per_fault), key=lambda i: (load[i], i))
        slices[k].append(p)
        load[k] += len(items[p.patient_id])
    return [sorted(s, key=lambda p: p.index) for s in slices]


def run_once(stack: FaultStack, faults: list[Fault], cohort: Cohort, per_fault: int, opt: Options,
             say: Callable[[str], None]) -> list[report.Row]:
    items = cohort_items(cohort, cohort.patients)
    slices = _slices(len(faults), cohort, per_fault, items)
    ids = [[p.patient_id for p in s] for s in slices]

    say("clean run: every slice uploaded without faults")
    started = time.monotonic()
    stack.begin_run("clean")
    try:
        devices = _prepare(stack, cohort, cohort.patients)
        ledger = Ledger()
        asyncio.run(_phase(stack, None, _uploads(devices, items, cohort.patients), ledger, opt,
                           random.Random(opt.seed)))
        clean = _judge(stack, "clean", ledger, [p.patient_id for p in cohort.patients], opt, started, [], None)
        if clean.missing or clean.duplicated or ledger.unacked or ledger.refused:
            raise RuntimeError(f"the clean run did not store its cohort: {report.table([clean])}")
        with _connect(stack.settings)() as conn:
            references = [checks.derived(conn, p) for p in ids]
        clean_db = stack.settings.pg_database
    finally:
        stack.end_run()
    say(f"clean run: {clean.acknowledged} events stored in {clean.seconds:.0f} s")

    rows = []
    stack.begin_run("faults")
    try:
        devices = _prepare(stack, cohort, cohort.patients)
        for fault, patients, pids, ref in zip(faults, slices, ids, references, strict=True):
            say(f"{fault.name}: {fault.what}")
            started = time.monotonic()
            notes = stack.revive()
            ledger = Ledger()
            notes += asyncio.run(_phase(stack, fault, _uploads(devices, items, patients), ledger, opt,
                                        random.Random(f"{opt.seed}-{fault.name}")))
            row = _judge(stack, fault.name, ledger, pids, opt, started, notes, ref, clean_db)
            if row.needs_recovery():
                row.notes.append(_recover(stack, ledger, pids, opt, row.absent))
            say(report.table([row]).splitlines()[-1])
            rows.append(row)
    finally:
        stack.end_run()
    return rows


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30m, 90s, 1h)")
    return float(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[m[2]]


def soak(stack: FaultStack, faults: list[Fault], args: argparse.Namespace, opt: Options,
         say: Callable[[str], None]) -> tuple[list[report.Row], list[tuple[float, dict[str, float]]]]:
    """Back-to-back cycles of fresh patients; every `--soak-fault-every` cycles the next fault."""
    samples: list[tuple[float, dict[str, float]]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not stop.wait(args.sample_s):
            samples.append((time.monotonic() - t0, stack.rss()))

    rows: list[report.Row] = []
    stack.begin_run("soak")
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        cycle = 0
        while time.monotonic() - t0 < args.soak:
            every = args.soak_fault_every
            fault = faults[(cycle // every) % len(faults)] if cycle % every == every - 1 else None
            cohort = _cohort(args.soak_patients, args.days, args.seed + 1000 + cycle)
            started = time.monotonic()
            devices = _prepare(stack, cohort, cohort.patients)
            items = cohort_items(cohort, cohort.patients)
            ledger = Ledger()
            notes = asyncio.run(_phase(stack, fault, _uploads(devices, items, cohort.patients), ledger, opt,
                                       random.Random(cycle)))
            pids = [p.patient_id for p in cohort.patients]
            row = _judge(stack, f"{cycle:03d} {fault.name if fault else 'load'}", ledger, pids, opt, started, notes,
                         None)
            if row.needs_recovery():
                row.notes.append(_recover(stack, ledger, pids, opt, row.absent))
            if samples:
                row.notes.append("RSS MiB " + " ".join(f"{k} {v:.0f}" for k, v in sorted(samples[-1][1].items())))
            say(report.table([row]).splitlines()[-1])
            rows.append(row)
            cycle += 1
    finally:
        stop.set()
        sampler.join()
        stack.end_run()
    return rows, samples


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rtm faults", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated faults to run (default all): " + ", ".join(BY_NAME))
    p.add_argument("--patients-per-fault", type=int, default=2)
    p.add_argument("--days", type=int, default=3, help="days of the simulated cohort")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--pace", type=float, default=0.15, help="seconds between one device's requests")
    p.add_argument("--outage", type=float, default=2.0, help="seconds a stopped broker or database stays down")
    p.add_argument("--quiet", type=float, default=15.0,
                   help="after a fault, give up waiting once nothing changed for this long (s)")
    p.add_argument("--settle-timeout", type=float, default=120.0)
    p.add_argument("--phase-timeout", type=float, default=120.0,
                   help="a device gives up resending after this long (s): its rest is never acknowledged")
    p.add_argument("--republish-after", type=float, default=None,
                   help="seconds before the gateway's outbox relay publishes an unstored event again (default: "
                        "the gateway's own); longer than the wait, a worker that lost an event cannot have it "
                        "repaired by the relay before the check")
    p.add_argument("--keep-logs", action="store_true", help="keep the logs of the private stack even on success")
    p.add_argument("--soak", type=parse_duration, help="sustained load with periodic faults for this long (30m)")
    p.add_argument("--soak-patients", type=int, default=6, help="fresh patients per soak cycle")
    p.add_argument("--soak-fault-every", type=int, default=3, help="a fault every N soak cycles")
    p.add_argument("--sample-s", type=float, default=5.0, help="memory sampling interval of the soak (s)")
    # Growth allowed from the warmed-up quarter to the last quarter: above the noise of Python's
    # allocator and faust's buffers on this stack (tens of MiB), far below a leak over 30 minutes.
    p.add_argument("--rss-growth-mib", type=float, default=50.0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    faults = list(FAULTS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BY_NAME]
        if unknown:
            print(f"unknown fault(s): {', '.join(unknown)}; choose from {', '.join(BY_NAME)}", file=sys.stderr)
            return 2
        faults = [BY_NAME[n] for n in names]
    opt = Options(args.pace, args.outage, args.quiet, args.settle_timeout, args.phase_timeout, args.seed)
    base = get_settings()
    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]
    stack = FaultStack(
        base, base.state_dir / "faults" / run_id, n_workers=args.workers,
        # Retry-After of 1 s keeps a run short; devices honour whatever the gateway says.
        gateway_env={"RTM_GATEWAY_RETRY_AFTER_S": "1", "RTM_GATEWAY_LOG_LEVEL": "warning",
                     **({"RTM_GATEWAY_OUTBOX_REPUBLISH_AFTER_S": str(args.republish_after)}
                        if args.republish_after is not None else {})},
        # Phones upload sessions whole: analyse a recording after 1 s of quiet; eligibility every 2 s.
        worker_overrides={"analysis_quiet_s": 1.0, "eligibility_interval_s": 2.0},
    )

    def say(line: str) -> None:
        print(line, flush=True)

    started = time.monotonic()
    ok = False
    try:
        try:
            stack.start_cluster()
            if args.soak:
                rows, samples = soak(stack, faults, args, opt, say)
                mem, verdict = report.memory_table(samples, args.rss_growth_mib)
                print("\n" + report.table(rows) + "\n\n" + mem)
                faulted = [r for r in rows if not r.fault.endswith(" load")]
                s = report.summary(faulted, 0, seconds=round(time.monotonic() - started), cycles=len(rows),
                                   memory=verdict, memory_flat=all(v["flat"] for v in verdict.values()),
                                   restarts=stack.restarts)
                s["acknowledged"] = sum(r.acknowledged for r in rows)
                s["missing"] = sum(r.missing for r in rows)
                s["duplicated"] = sum(r.duplicated for r in rows)
                ok = report.targets_met(s) and s["memory_flat"]
            else:
                cohort = _cohort(len(faults) * args.patients_per_fault, args.days, args.seed)
                say(f"cohort: {len(cohort.patients)} patients x {args.days} days (seed {args.seed}), "
                    f"{args.patients_per_fault} per fault; private stack in {stack.root}")
                rows = run_once(stack, faults, cohort, args.patients_per_fault, opt, say)
                print("\n" + report.table(rows))
                s = report.summary(rows, report.MIN_FAULTS if not args.only else len(faults),
                                   seconds=round(time.monotonic() - started), restarts=stack.restarts)
                ok = report.targets_met(s)
        except RuntimeError as exc:  # the private stack or the clean run failed: no verdict possible
            print(f"rtm faults: {exc}; logs in {stack.root}", file=sys.stderr)
            return 1
        wanted = "memory flat" if args.soak else f"faults >= {s['min_faults']}, derived equal"
        print(f"targets (missing = 0, duplicated = 0, {wanted}): "
              f"{'met' if ok else 'NOT met'}; logs: {stack.root if not ok or args.keep_logs else 'removed'}")
        print(report.json_line(s))
    finally:
        stack.close(keep_logs=not ok or args.keep_logs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
