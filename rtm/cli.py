"""`rtm`: the one command-line entry point. Each part registers its own subcommands here."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from rtm.settings import get_settings

# name -> "module:function" taking argv and returning an exit code. Imported lazily so that a
# quick command (status) does not pay for numpy/scipy/faust imports.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "encoding": ("rtm.contract.bench:main", "encode+decode of IMU batches: binary frame vs JSON"),
    "signal": ("processors.signal.bench:main", "signal processing accuracy and throughput"),
    "ingest": ("ingest.bench:main", "gateway throughput and latency on loopback"),
    "pipeline": ("processors.bench:main", "IMU samples/s and latency, produce -> worker -> database"),
    "eligibility": ("processors.eligibility.bench:main", "recompute RTM eligibility for 10,000 patients x 90 days"),
    "hub": ("device_adapters.hub.bench:main", "virtual BLE devices through one hub agent, killed mid-upload"),
    "dashboards": ("dashboards.bench:main", "clinic app server time: queue, patient page, billing; 500 patients"),
}


def _load(target: str) -> Callable[[list[str]], int]:
    module, _, func = target.partition(":")
    fn: Callable[[list[str]], int] = getattr(importlib.import_module(module), func)
    return fn


def cmd_up(args: argparse.Namespace) -> int:
    from rtm import stack

    for line in stack.up(get_settings()):
        print(f"up: {line}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from rtm import stack

    stack.down(get_settings(), purge=args.purge)
    print("down: stopped" + (" and deleted the database" if args.purge else ""))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from rtm import stack

    states = stack.status(get_settings())
    for name, (running, detail) in states.items():
        print(f"{name:9} {'up  ' if running else 'down'}  {detail}")
    return 0 if all(r for r, _ in states.values()) else 1


def cmd_migrate(args: argparse.Namespace) -> int:
    from rtm.db.migrate import migrate

    applied = migrate(get_settings())
    print("migrate: " + (", ".join(applied) if applied else "up to date"))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    if args.supervise:
        from processors.supervisor import supervise

        return supervise(get_settings(), args.workers, args.loglevel)
    from processors.worker import run_worker

    return run_worker(loglevel=args.loglevel)


def cmd_run(args: argparse.Namespace) -> int:
    from rtm.mainjob import run_main_job

    return run_main_job(patients=args.patients, days=args.days, seed=args.seed)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.name not in BENCHMARKS:
        print(f"unknown benchmark {args.name!r}; choose from: {', '.join(sorted(BENCHMARKS))}", file=sys.stderr)
        return 2
    return _load(BENCHMARKS[args.name][0])(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtm", description="Remote Therapeutic Monitoring pipeline")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("up", help="start the local stack (database, broker) and create topics").set_defaults(
        func=cmd_up
    )
    p = sub.add_parser("down", help="stop the local stack")
    p.add_argument("--purge", action="store_true", help="also delete the local database")
    p.set_defaults(func=cmd_down)
    sub.add_parser("status", help="show whether the local services are up").set_defaults(func=cmd_status)
    sub.add_parser("migrate", help="apply pending database migrations").set_defaults(func=cmd_migrate)

    p = sub.add_parser("worker", help="run one stream-processing worker (faust), or supervise several")
    p.add_argument("--loglevel", default="warning")
    p.add_argument("--supervise", action="store_true",
                   help="keep --workers workers running (web ports from RTM_WORKER_WEB_PORT up), restarting any that "
                        "exits or stops answering /live/")
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("run", help="the main job: stack, pipeline and a simulated cohort, end to end")
    p.add_argument("--patients", type=int, default=50)
    p.add_argument("--days", type=int, default=45)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=cmd_run)

    from device_adapters.hub.cli import register as register_hub
    from ingest.cli import register as register_ingest
    from processors.eligibility.cli import register as register_eligibility

    register_ingest(sub)
    register_eligibility(sub)
    register_hub(sub)

    # Parsed by the tool itself (its options follow the name): see main() below.
    sub.add_parser(
        "faults", add_help=False,
        help="run a simulated cohort through the local stack while injecting faults (rtm faults --help)",
    )

    p = sub.add_parser(
        "bench",
        help="run a benchmark: " + "; ".join(f"{k} ({v[1]})" for k, v in sorted(BENCHMARKS.items())),
    )
    p.add_argument("name")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from rtm.stack import StackError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["faults"]:  # a developer tool with options of its own, imported only when asked for
        return _load("tools.faults.main:main")(argv[1:])
    if argv[:1] == ["app"]:  # the clinic web app (dashboards/cli.py, a typer app)
        return _load("dashboards.cli:main")(argv[1:])
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except StackError as exc:  # an operator's problem, said plainly rather than as a traceback
        print(f"rtm: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
